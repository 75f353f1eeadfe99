"""One gateway for the connector tests: the real all-MiniLM-L6-v2 plus tiny SPLADE,
ColBERT and cross-encoder models, and an engine on the same specs for expected values."""

from __future__ import annotations

import asyncio

import pytest

from engine import Engine, EngineConfig, spec_from_folder
from tests import zoo
from tests.conftest import LiveServer


@pytest.fixture(scope="session")
def task_server(tmp_path_factory, minilm_spec):
    root = tmp_path_factory.mktemp("connectors")
    specs = [minilm_spec, spec_from_folder("splade", zoo.splade(root / "splade")[0]),
             spec_from_folder("colbert", zoo.colbert(root / "colbert")[0]),
             spec_from_folder("rerank", zoo.cross_encoder(root / "rerank")[0])]
    config = EngineConfig(device="cpu", dtype="float32", max_inputs_per_request=256)
    with LiveServer(Engine(specs, config)) as live:
        live.reference_engine = Engine(specs, config)
        yield live


@pytest.fixture(scope="session")
def engine_call(task_server):
    def call(make):
        engine = task_server.reference_engine

        async def run():
            await engine.start()
            try:
                return await make(engine)
            finally:
                await engine.stop()
        return asyncio.run(run())
    return call
