"""One gateway for the connector tests: the real all-MiniLM-L6-v2 plus tiny SPLADE,
ColBERT and cross-encoder models, and an engine on the same specs for expected values."""

from __future__ import annotations

import pytest

from engine import Engine, EngineConfig
from tests.conftest import LiveServer, run_on, zoo_specs


@pytest.fixture(scope="session")
def task_server(tmp_path_factory, minilm_spec):
    specs = [minilm_spec] + zoo_specs(tmp_path_factory.mktemp("connectors"), ("splade", "colbert", "rerank"))
    config = EngineConfig(device="cpu", dtype="float32", max_inputs_per_request=256)
    with LiveServer(Engine(specs, config)) as live:
        live.reference_engine = Engine(specs, config)
        yield live


@pytest.fixture(scope="session")
def engine_call(task_server):
    return lambda make: run_on(task_server.reference_engine, make)
