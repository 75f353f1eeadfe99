"""The operator API answers honestly over real HTTP: a model that cannot fit beside the
pinned one is a fast 503 naming why (and blocks no other model), unloading a pinned model is
a 409, operator keys alone may load and unload, and /readyz says whether any configured
model can serve."""

from __future__ import annotations

import time
from dataclasses import replace

import httpx
import numpy as np
import pytest

from engine import Engine, EngineConfig, spec_from_folder
from engine.catalog import spec_from_reference
from engine.pool import footprint
from gateway.app import GatewaySettings
from tests.conftest import LiveServer
from tests.tiny import tiny_bert, write_sentence_transformers_config

TEXTS = ["hello there", "a second, longer input text"]
INFERENCE_KEY, OPERATOR_KEY = "inference-key", "operator-key"


@pytest.fixture(scope="module")
def pinned_server(tmp_path_factory):
    """`a` pinned, `c` fits beside it, `b` never does; inference and operator keys set."""
    from sentence_transformers import SentenceTransformer

    root = tmp_path_factory.mktemp("operator")
    specs, references = [], {}
    for seed, (name, hidden) in enumerate((("a", 128), ("b", 128), ("c", 32))):
        folder = tiny_bert(root / name, hidden=hidden, heads=4, intermediate=2 * hidden, seed=seed)
        write_sentence_transformers_config(folder)
        specs.append(replace(spec_from_folder(name, folder), pin=name == "a"))
        references[name] = SentenceTransformer(str(folder), device="cpu").encode(TEXTS, normalize_embeddings=True)
    sizes = {spec.name: footprint(spec, 4) for spec in specs}
    engine = Engine(specs, EngineConfig(device="cpu", dtype="float32",
                                        memory_budget=sizes["a"] + sizes["c"] + (sizes["b"] - sizes["c"]) // 2))
    settings = GatewaySettings(api_keys=(INFERENCE_KEY,), admin_keys=(OPERATOR_KEY,), preload=("a",))
    with LiveServer(engine, settings) as live:
        yield live, references


def _post(live, path, key=INFERENCE_KEY, **kwargs):
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.post(live.url + path, headers=headers, timeout=30, **kwargs)


def test_a_model_that_cannot_fit_is_a_fast_503_and_others_keep_serving(pinned_server):
    live, references = pinned_server
    started = time.monotonic()
    refused = httpx.post(live.url + "/v1/encode", json={"model": "b", "inputs": TEXTS}, timeout=30,
                         headers={"Authorization": f"Bearer {INFERENCE_KEY}", "X-Shoal-Deadline-Ms": "1500"})
    assert time.monotonic() - started < 1.0
    assert refused.status_code == 503
    error = refused.json()["error"]
    assert error["type"] == "model_cannot_fit" and "'b'" in error["message"] and "pinned" in error["message"]
    served = _post(live, "/v1/encode", json={"model": "c", "inputs": TEXTS})
    assert served.status_code == 200
    np.testing.assert_allclose(served.json()["embeddings"], references["c"], atol=1e-5)
    loaded = _post(live, "/v1/models/b/load", key=OPERATOR_KEY)
    assert loaded.status_code == 503 and loaded.json()["error"]["type"] == "model_cannot_fit"
    metrics = httpx.get(live.url + "/metrics", timeout=10).text
    assert 'shoal_queue_tokens{model="b"} 0.0' in metrics


def test_unloading_a_pinned_model_is_a_409_naming_why(pinned_server):
    live, _ = pinned_server
    response = _post(live, "/v1/models/a/unload", key=OPERATOR_KEY)
    assert response.status_code == 409
    assert response.json()["error"] == {"type": "conflict", "message": "model 'a' is pinned; it is never unloaded"}
    listing = httpx.get(live.url + "/v1/models", timeout=10, headers={"Authorization": f"Bearer {INFERENCE_KEY}"})
    states = {m["id"]: m["state"] for m in listing.json()["data"]}
    assert states["a"] == "resident"


@pytest.mark.parametrize("key,status", [(None, 401), ("wrong", 401), (INFERENCE_KEY, 403), (OPERATOR_KEY, 200)])
def test_only_operator_keys_load_and_unload(pinned_server, key, status):
    live, _ = pinned_server
    for action in ("load", "unload"):
        response = _post(live, f"/v1/models/c/{action}", key=key)
        assert response.status_code == status, response.text
        if status != 200:
            assert response.json()["error"]["type"] in ("unauthorized", "forbidden")


@pytest.mark.parametrize("key,status", [(None, 401), ("wrong", 401), (INFERENCE_KEY, 200), (OPERATOR_KEY, 200)])
def test_inference_takes_inference_or_operator_keys(pinned_server, key, status):
    live, references = pinned_server
    response = _post(live, "/v1/encode", key=key, json={"model": "c", "inputs": TEXTS})
    assert response.status_code == status
    if status == 200:
        np.testing.assert_allclose(response.json()["embeddings"], references["c"], atol=1e-5)


def test_readyz_is_not_ready_while_no_configured_model_can_serve(tmp_path):
    specs = [spec_from_reference("gone", str(tmp_path / "nothing-here"))]
    live = LiveServer(Engine(specs, EngineConfig(device="cpu", dtype="float32")))
    live.thread.start()  # not `with live`: that waits for a readiness this server must not claim
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(live.url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.05)
        ready = httpx.get(live.url + "/readyz", timeout=5)
        assert ready.status_code == 503
        message = ready.json()["error"]["message"]
        assert "no configured model can serve" in message and "gone" in message and str(tmp_path) not in message
        assert message.count("'gone'") == 1, message  # its reason once, not "gone: model 'gone': ..."
    finally:
        live.__exit__(None, None, None)


@pytest.mark.parametrize("path,body,shape", [
    ("/v1/encode", {"model": "c", "inputs": TEXTS}, lambda b: b["error"]["type"] == "unauthorized"),
    ("/v1/embeddings", {"model": "c", "input": TEXTS},
     lambda b: (b["error"]["type"], b["error"]["code"]) == ("authentication_error", "unauthorized")),
    ("/tei/c/embed", {"inputs": TEXTS}, lambda b: set(b) == {"error", "error_type"}),
    ("/weaviate/c/vectors", {"text": TEXTS[0]}, lambda b: set(b) == {"error"} and isinstance(b["error"], str)),
    ("/v2/embed", {"model": "c", "texts": TEXTS}, lambda b: set(b) == {"message"}),
    ("/v1/rerank", {"model": "c", "query": "q", "documents": TEXTS}, lambda b: set(b) == {"detail"}),
    ("/api/embed", {"model": "c", "input": TEXTS}, lambda b: set(b) == {"error"} and isinstance(b["error"], str)),
])
def test_a_missing_key_is_refused_in_the_routes_own_error_shape(pinned_server, path, body, shape):
    live, _ = pinned_server
    response = _post(live, path, key=None, json=body)
    assert response.status_code == 401 and response.headers["www-authenticate"] == "Bearer"
    assert shape(response.json()), response.text


def test_failed_models_show_their_reason_once_and_no_guessed_fields(tmp_path, minilm_spec):
    """/v1/models on a server whose catalog names a missing folder, a folder without config.json
    and a hub id absent from the cache: each is `failed` with its reason once and no server path,
    and what only its folder could tell is null; the served model still serves, and /readyz is 200."""
    (tmp_path / "no-config").mkdir()
    specs = [minilm_spec, spec_from_reference("missing", str(tmp_path / "nowhere")),
             spec_from_reference("no-config", str(tmp_path / "no-config")),
             spec_from_reference("uncached", "example-org/not-in-the-cache")]
    with LiveServer(Engine(specs, EngineConfig(device="cpu", dtype="float32"))) as live:
        entries = {m["id"]: m for m in httpx.get(live.url + "/v1/models", timeout=30).json()["data"]}
        assert entries[minilm_spec.name]["dimension"] == 384 and entries[minilm_spec.name]["capabilities"] == ["dense"]
        reasons = {"missing": "neither a folder nor a model in the local Hugging Face cache",
                   "no-config": "no config.json in its folder", "uncached": "'example-org/not-in-the-cache'"}
        for name, reason in reasons.items():
            entry = entries[name]
            assert entry["state"] == "failed" and reason in entry["error"], entry
            assert entry["error"].count(f"model '{name}'") == 1 and str(tmp_path) not in entry["error"], entry
            unknown = ("bytes", "capabilities", "attention_backend", "dimension", "max_length", "labels_at_request")
            assert {key: entry[key] for key in unknown} == dict.fromkeys(unknown), entry
            refused = httpx.post(live.url + "/v1/encode", json={"model": name, "inputs": ["a"]}, timeout=30)
            assert refused.status_code == 503 and refused.json()["error"]["type"] == "model_load_failed"
            message = refused.json()["error"]["message"]
            assert reason in message and message.count(f"model '{name}'") == 1 and str(tmp_path) not in message
        assert httpx.get(live.url + "/readyz", timeout=5).status_code == 200  # one model can serve
