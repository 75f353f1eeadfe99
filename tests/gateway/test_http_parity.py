"""The real all-MiniLM-L6-v2 over HTTP (native, OpenAI float and base64, msgpack) against
sentence-transformers (tests/references.py: atol 1e-5 and cosine >= 0.9999), and concurrent
requests against one-at-a-time requests and the same reference."""

from __future__ import annotations

import asyncio
import base64

import httpx
import msgpack
import numpy as np
import pytest

from tests import references
from tests.texts import varied_texts

TEXTS = varied_texts(210, seed=21)
MODEL = "all-MiniLM-L6-v2"


@pytest.fixture(scope="module")
def reference(minilm_reference):
    return minilm_reference.encode(TEXTS, batch_size=32, normalize_embeddings=True)


def test_native_encode_matches_sentence_transformers(client, reference):
    response = client.post("/v1/encode", json={"model": MODEL, "inputs": TEXTS})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == MODEL and body["output"] == "dense"
    references.assert_vectors_close(body["embeddings"], reference)
    assert body["usage"]["input_tokens"] > len(TEXTS)


def test_openai_float_and_base64_match(client, reference):
    floats = client.post("/v1/embeddings", json={"model": "sentence-transformers/all-MiniLM-L6-v2", "input": TEXTS[:50]})
    assert floats.status_code == 200, floats.text
    body = floats.json()
    assert body["object"] == "list" and body["model"] == MODEL
    assert [d["index"] for d in body["data"]] == list(range(50))
    assert body["usage"]["prompt_tokens"] == body["usage"]["total_tokens"] > 0
    float_vectors = [d["embedding"] for d in body["data"]]
    references.assert_vectors_close(float_vectors, reference[:50])
    for header in ("limit-requests", "remaining-requests", "reset-requests", "limit-tokens", "remaining-tokens",
                   "reset-tokens"):
        assert floats.headers[f"x-ratelimit-{header}"]
    assert floats.headers["x-ratelimit-reset-tokens"] == "1s"

    encoded = client.post("/v1/embeddings", json={"model": MODEL, "input": TEXTS[:50], "encoding_format": "base64"})
    decoded = [np.frombuffer(base64.b64decode(d["embedding"]), dtype="<f4") for d in encoded.json()["data"]]
    np.testing.assert_array_equal(np.stack(decoded), np.asarray(float_vectors, dtype=np.float32))


def test_openai_single_string_and_dimensions(client, minilm_spec):
    response = client.post("/v1/embeddings", json={"model": MODEL, "input": TEXTS[30], "dimensions": 128})
    (item,) = response.json()["data"]
    references.assert_vectors_close([item["embedding"]], references.dense(minilm_spec.path, TEXTS[30:31], dimensions=128))


def test_msgpack_request_and_response(client, reference):
    payload = msgpack.packb({"model": MODEL, "inputs": TEXTS[:10]})
    response = client.post("/v1/encode", content=payload,
                           headers={"content-type": "application/msgpack", "accept": "application/msgpack"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/msgpack")
    body = msgpack.unpackb(response.content)
    references.assert_vectors_close(body["embeddings"], reference[:10])


def test_concurrent_requests_equal_one_at_a_time(server, client, reference):
    texts = TEXTS[:64]
    alone = [client.post("/v1/encode", json={"model": MODEL, "inputs": [t]}).json()["embeddings"][0] for t in texts]

    async def together():
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as c:
            responses = await asyncio.gather(*(c.post("/v1/encode", json={"model": MODEL, "inputs": [t]}) for t in texts))
        assert all(r.status_code == 200 for r in responses)
        return [r.json()["embeddings"][0] for r in responses]

    concurrent = asyncio.run(together())
    references.assert_vectors_close(alone, reference[:64])
    references.assert_vectors_close(concurrent, reference[:64])
    np.testing.assert_allclose(np.array(concurrent), np.array(alone), atol=1e-5)


def test_models_list_reports_serving_state(client):
    body = client.get("/v1/models").json()
    assert body["object"] == "list"
    (entry,) = body["data"]
    assert entry["id"] == MODEL and entry["object"] == "model" and entry["owned_by"] == "shoal"
    assert entry["state"] == "resident" and entry["bytes"] > 80_000_000
    assert entry["attention_backend"] == "sdpa_grouped" and "dense" in entry["capabilities"]


def test_openapi_schema_describes_the_routes(client):
    schema = client.get("/schema/openapi.json").json()
    assert {"/v1/encode", "/v1/embeddings", "/v1/models", "/healthz", "/readyz"} <= set(schema["paths"])
    assert "requestBody" in schema["paths"]["/v1/encode"]["post"]
