"""Gateway behaviour under its options: API keys, bfloat16, overload (429), deadlines (504),
metrics after real traffic."""

from __future__ import annotations

import asyncio

import httpx
import numpy as np
import pytest

from engine import Engine, EngineConfig
from engine.device import cpu_supports_bfloat16
from gateway.app import GatewaySettings
from tests.conftest import LiveServer
from tests.texts import varied_texts

MODEL = "all-MiniLM-L6-v2"


def _engine(spec, **config) -> Engine:
    return Engine([spec], EngineConfig(device="cpu", **{"dtype": "float32", **config}))


def test_api_keys_guard_every_route_but_health_and_metrics(minilm_spec, tmp_path):
    keys_file = tmp_path / "keys"
    keys_file.write_text("# operators\nkey-from-file\n")
    from gateway.cli import api_keys, build_parser

    keys = api_keys(build_parser().parse_args(["serve", "--api-key", "secret", "--api-keys-file", str(keys_file)]))
    assert keys == ("secret", "key-from-file")
    with LiveServer(_engine(minilm_spec), GatewaySettings(api_keys=keys)) as live, \
            httpx.Client(base_url=live.url, timeout=30) as client:
        body = {"model": MODEL, "inputs": ["guarded"]}
        assert client.post("/v1/encode", json=body).status_code == 401
        wrong = client.post("/v1/encode", json=body, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and wrong.json()["error"]["type"] == "unauthorized"
        for key in keys:
            assert client.post("/v1/encode", json=body, headers={"Authorization": f"Bearer {key}"}).status_code == 200
        assert client.get("/v1/models").status_code == 401
        for open_path in ("/healthz", "/readyz", "/metrics"):
            assert client.get(open_path).status_code == 200


@pytest.mark.skipif(not cpu_supports_bfloat16(), reason="this CPU has no native bfloat16 (AVX512-BF16 or AMX)")
def test_bfloat16_over_http_matches_sentence_transformers(minilm_spec, minilm_reference):
    texts = varied_texts(200, seed=5)
    reference = minilm_reference.encode(texts, normalize_embeddings=True)
    with LiveServer(_engine(minilm_spec, dtype="bfloat16")) as live, httpx.Client(base_url=live.url, timeout=60) as c:
        models = c.get("/v1/models").json()["data"]
        assert models[0]["dtype"] == "bfloat16"
        vectors = np.array(c.post("/v1/encode", json={"model": MODEL, "inputs": texts}).json()["embeddings"])
    norms = np.linalg.norm(vectors, axis=1)
    np.testing.assert_allclose(norms, 1.0, atol=1e-3)  # normalised, as the model's Normalize module does
    assert ((vectors * reference).sum(1) / norms).min() >= 0.999  # cosine, bfloat16 tolerance


def test_overload_answers_429_with_retry_after_and_keeps_serving(minilm_spec):
    engine = _engine(minilm_spec, max_batch_tokens=256, max_queue_tokens=800)

    async def flood(url):
        async with httpx.AsyncClient(base_url=url, timeout=60) as c:
            requests = [c.post("/v1/encode", json={"model": MODEL, "inputs": ["word " * 120]}) for _ in range(40)]
            return await asyncio.gather(*requests)

    with LiveServer(engine) as live:
        responses = asyncio.run(flood(live.url))
        statuses = [r.status_code for r in responses]
        assert set(statuses) == {200, 429}
        refused = [r for r in responses if r.status_code == 429]
        assert all(int(r.headers["retry-after"]) >= 1 for r in refused)
        assert all(r.json()["error"]["type"] == "overloaded" for r in refused)
        assert httpx.post(live.url + "/v1/encode", json={"model": MODEL, "inputs": ["after"]}).status_code == 200
        metrics = httpx.get(live.url + "/metrics").text
        assert f'shoal_rejections_total{{reason="overloaded"}} {float(len(refused))}' in metrics


def test_deadline_header_gives_504_when_work_waits_too_long(minilm_spec):
    engine = _engine(minilm_spec, max_batch_tokens=256)

    async def run(url):
        async with httpx.AsyncClient(base_url=url, timeout=60) as c:
            slow = asyncio.create_task(c.post("/v1/encode", json={"model": MODEL, "inputs": ["word " * 250] * 16}))
            while 'shoal_queue_depth{model="all-MiniLM-L6-v2"} 0.0' in (await c.get("/metrics")).text:
                await asyncio.sleep(0.01)  # until the slow request's batches are queued ahead
            late = c.post("/v1/encode", json={"model": MODEL, "inputs": ["hurry"]}, headers={"x-shoal-deadline-ms": "1"})
            return await asyncio.gather(slow, late)

    with LiveServer(engine) as live:
        slow, late = asyncio.run(run(live.url))
    assert slow.status_code == 200
    assert late.status_code == 504 and late.json()["error"]["type"] == "deadline_exceeded"


def test_metrics_after_traffic(client):
    client.post("/v1/encode", json={"model": MODEL, "inputs": ["count me", "and me"]})
    client.post("/v1/encode", json={"model": "absent", "inputs": ["x"]})
    text = client.get("/metrics").text
    assert 'shoal_requests_total{model="all-MiniLM-L6-v2",route="/v1/encode",status="200"}' in text
    assert 'shoal_requests_total{model="",route="/v1/encode",status="404"}' in text
    assert 'shoal_request_duration_seconds_bucket{le="0.005",model="all-MiniLM-L6-v2",route="/v1/encode"}' in text
    for name in ("shoal_queue_depth{model=", "shoal_queue_tokens{model=", "shoal_batch_size_bucket",
                 "shoal_batch_tokens_bucket", "shoal_tokens_total{model=", "shoal_requests_in_flight",
                 "shoal_models_resident 1.0", "shoal_resident_bytes{tier=\"device\"}"):
        assert name in text, name
