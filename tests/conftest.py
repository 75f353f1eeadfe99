"""Shared fixtures: the real all-MiniLM-L6-v2, its sentence-transformers reference, tiny
task models with their references (tests/references.py), and a real HTTP server on loopback."""

from __future__ import annotations

import socket
import threading
import time

import httpx
import pytest

from engine import Engine, EngineConfig, default_model_spec


@pytest.fixture(scope="session")
def minilm_spec():
    return default_model_spec()


@pytest.fixture(scope="session")
def minilm_reference(minilm_spec):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(minilm_spec.path), device="cpu")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """The real gateway under uvicorn, on a loopback port, in a background thread."""

    def __init__(self, engine: Engine, settings=None):
        import uvicorn

        from gateway.app import GatewaySettings, create_app

        self.gateway = create_app(engine, settings or GatewaySettings())
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(self.gateway.asgi, host="127.0.0.1", port=self.port, log_config=None,
                                access_log=False, lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> "LiveServer":
        self.thread.start()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/readyz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError("server did not become ready")

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


def zoo_specs(root, names: tuple[str, ...]) -> list:
    """Specs of tiny task models from tests/zoo.py built under `root`, each served under its
    builder's name: cross_encoder as "rerank", classifier as "intent", entity_tagger as "ner",
    "splade", "colbert"."""
    from tests.references import Zoo

    return Zoo(root).specs(names)


@pytest.fixture(scope="session")
def task_models(tmp_path_factory):
    """The tiny task models (tests.references.Zoo), built once per session for every HTTP
    test, with the in-memory models their references need."""
    from tests.references import Zoo

    return Zoo(tmp_path_factory.mktemp("zoo"))


@pytest.fixture(scope="session")
def server(minilm_spec):
    """The default model served as `shoal serve` would, float32 on CPU."""
    from gateway.app import GatewaySettings

    engine = Engine([minilm_spec], EngineConfig(device="cpu", dtype="float32", max_inputs_per_request=256))
    with LiveServer(engine, GatewaySettings(preload=(minilm_spec.name,), max_body_bytes=2**20)) as live:
        yield live


@pytest.fixture
def client(server):
    with httpx.Client(base_url=server.url, timeout=60) as c:
        yield c
