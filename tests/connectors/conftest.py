"""One gateway for the connector tests: the real all-MiniLM-L6-v2 plus the tiny SPLADE,
ColBERT and cross-encoder models of the session's `task_models` (their expected values come
from tests/references.py: sentence-transformers and PyLate, not a second Shoal engine)."""

from __future__ import annotations

import pytest

from engine import Engine, EngineConfig
from tests.conftest import LiveServer


@pytest.fixture(scope="session")
def task_server(task_models, minilm_spec):
    specs = [minilm_spec] + task_models.specs(("splade", "colbert", "rerank"))
    config = EngineConfig(device="cpu", dtype="float32", max_inputs_per_request=256)
    with LiveServer(Engine(specs, config)) as live:
        yield live
