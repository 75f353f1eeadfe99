"""Weaviate's module clients, replayed from fixtures (tests/fixtures/weaviate/*.json) that
hold the exact requests Weaviate sends: bodies as raw bytes, headers (no Content-Type from
the transformers modules), the `//` paths, chunked parallel rerank and one text per
request under concurrency. The assertions are on exactly what Weaviate's Go client reads
back. (The weaviate-client configuration objects are checked in tests/connectors.)"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import numpy as np
import pytest

from engine import Engine, EngineConfig
from tests.conftest import LiveServer, run_on, zoo_specs

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "weaviate"
MODEL = "all-MiniLM-L6-v2"


def fixture(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.json").read_text())


@pytest.fixture(scope="module")
def live(tmp_path_factory, minilm_spec):
    specs = [minilm_spec] + zoo_specs(tmp_path_factory.mktemp("weaviate"), ("rerank", "colbert"))
    config = EngineConfig(device="cpu", dtype="float32")
    with LiveServer(Engine(specs, config)) as server:
        yield server, Engine(specs, config)


def engine_call(live, make):
    return run_on(live[1], make)


def send(url: str, method: str, headers: dict, body: bytes | None = None, timeout: float = 50.0) -> httpx.Response:
    """Exactly these headers and bytes (httpx adds only Host, Content-Length and its defaults;
    an explicit Request keeps a `//` path as written)."""
    request = httpx.Request(method, url, headers=headers, content=body)
    with httpx.Client(timeout=timeout) as client:
        return client.send(request)


def go_json(value) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def fill(value, **names):
    """Replace "{name}" placeholders in a fixture body."""
    if isinstance(value, str):
        for key, replacement in names.items():
            if value == "{" + key + "}":
                return replacement
            value = value.replace("{" + key + "}", str(replacement))
        return value
    if isinstance(value, list):
        return [fill(v, **names) for v in value]
    if isinstance(value, dict):
        return {k: fill(v, **names) for k, v in value.items()}
    return value


def is_number_list(value) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(x, float) for x in value)


# ---- text2vec-transformers -----------------------------------------------------------
def test_transformers_startup_probes_and_meta(live):
    spec = fixture("text2vec-transformers")
    base = fill(spec["base"], gateway=live[0].url, model=MODEL)
    for name in ("ready", "live"):
        request = spec["requests"][name]
        response = send(base + request["path"], "GET", spec["headers"], timeout=request.get("timeout_s", 50))
        low, high = request["expect_status"]
        assert low <= response.status_code <= high
    meta = send(base + "/meta", "GET", spec["headers"])
    assert meta.status_code == 200 and isinstance(meta.json(), dict)


@pytest.mark.parametrize("name", ["object", "query", "object_with_dimensions", "trailing_slash"])
def test_transformers_vectorize_one_text(live, minilm_reference, name):
    spec = fixture("text2vec-transformers")
    request = spec["requests"][name]
    base = fill(spec["base"], gateway=live[0].url, model=MODEL)
    response = send(base + request["path"], request["method"], {**spec["headers"], **request.get("headers", {})},
                    request["raw_body"].encode())
    assert response.status_code == 200, response.text
    body = response.json()
    sent = json.loads(request["raw_body"])
    assert is_number_list(body["vector"]) and body["dims"] == len(body["vector"])
    assert body.get("error", "") == "" and body["text"] == sent["text"]
    dimensions = sent["config"].get("dimensions")
    expected = minilm_reference.encode([sent["text"]], normalize_embeddings=True)[0]
    if dimensions:
        assert len(body["vector"]) == dimensions
        expected = expected[:dimensions] / np.linalg.norm(expected[:dimensions])
    np.testing.assert_allclose(body["vector"], expected, atol=1e-4)


def test_transformers_cls_pooling_strategy(live, minilm_reference):
    """pooling_strategy "cls" pools the [CLS] token instead of the model's mean (then normalises, as the model does)."""
    spec = fixture("text2vec-transformers")
    request = spec["requests"]["cls_pooling"]
    base = fill(spec["base"], gateway=live[0].url, model=MODEL)
    response = send(base + request["path"], "POST", spec["headers"], request["raw_body"].encode())
    assert response.status_code == 200, response.text
    text = json.loads(request["raw_body"])["text"]
    tokens = minilm_reference.encode([text], output_value="token_embeddings")[0]
    cls = tokens[0].numpy() if hasattr(tokens[0], "numpy") else np.asarray(tokens[0])
    np.testing.assert_allclose(response.json()["vector"], cls / np.linalg.norm(cls), atol=1e-4)
    mean = minilm_reference.encode([text], normalize_embeddings=True)[0]
    assert float(np.dot(response.json()["vector"], mean)) < 0.99  # really a different pooling


def test_transformers_batch_format(live, minilm_reference):
    spec = fixture("text2vec-transformers")
    request = spec["requests"]["batch"]
    base = fill(spec["base"], gateway=live[0].url, model=MODEL)
    response = send(base + request["path"], "POST", {**spec["headers"], **request["headers"]},
                    request["raw_body"].encode())
    assert response.status_code == 200
    body = response.json()
    texts = json.loads(request["raw_body"])["texts"]
    assert len(body["vectors"]) == len(texts) and body["dims"] == 384 and body.get("error", "") == ""
    np.testing.assert_allclose(body["vectors"], minilm_reference.encode(texts, normalize_embeddings=True), atol=1e-4)


def test_transformers_error_is_read_as_a_string(live):
    spec = fixture("text2vec-transformers")
    request = spec["requests"]["unknown_pooling"]
    base = fill(spec["base"], gateway=live[0].url, model=MODEL)
    response = send(base + request["path"], "POST", spec["headers"], request["raw_body"].encode())
    assert response.status_code == 422
    assert isinstance(response.json()["error"], str) and "pool" in response.json()["error"]


def test_transformers_one_text_per_request_under_concurrency(live, minilm_reference):
    """Weaviate's import: one request per object, many in flight. Each answer must be its own text's vector."""
    spec = fixture("text2vec-transformers")
    texts = spec["concurrent_objects"] * 4  # 48 requests, repeated texts included
    base = fill(spec["base"], gateway=live[0].url, model=MODEL)

    async def run():
        limits = httpx.Limits(max_connections=32)
        async with httpx.AsyncClient(timeout=50, limits=limits) as client:
            async def one(text):
                body = go_json({"text": text, "dims": 0, "vector": None, "error": "",
                                "config": {"pooling_strategy": "masked_mean", "task_type": "passage"}})
                return await client.send(httpx.Request("POST", base + "/vectors", headers=spec["headers"], content=body))
            return await asyncio.gather(*(one(text) for text in texts))

    responses = asyncio.run(run())
    assert all(r.status_code == 200 for r in responses)
    reference = minilm_reference.encode(texts, normalize_embeddings=True)
    got = np.array([r.json()["vector"] for r in responses])
    assert [r.json()["text"] for r in responses] == texts
    np.testing.assert_allclose(got, reference, atol=1e-4)


# ---- reranker-transformers -----------------------------------------------------------
def test_reranker_chunked_parallel_requests_keep_input_order(live):
    spec = fixture("reranker-transformers")
    documents = [f"document {i} about {'rivers and valleys' if i % 3 == 0 else 'coffee and trains'} number {i}"
                 for i in range(spec["document_count"])]
    size = spec["chunk_size"]
    chunks = [documents[i:i + size] for i in range(0, len(documents), size)]
    base = fill(spec["base"], gateway=live[0].url, model="rerank")
    template = spec["request_template"]

    async def run():
        async with httpx.AsyncClient(timeout=50) as client:
            async def one(chunk):
                body = go_json(fill(template["body"], query=spec["query"], chunk=chunk))
                return await client.send(httpx.Request("POST", base + template["path"], headers=spec["headers"],
                                                       content=body))
            return await asyncio.gather(*(one(chunk) for chunk in chunks))

    responses = asyncio.run(run())
    scores = []
    for chunk, response in zip(chunks, responses):
        assert response.status_code == 200
        body = response.json()
        assert body["property"] is None or isinstance(body["property"], str)
        assert body["score"] is None or isinstance(body["score"], float)
        assert body.get("error", "") == ""
        assert [s["document"] for s in body["scores"]] == chunk  # score i belongs to document i
        scores += [s["score"] for s in body["scores"]]
    expected = engine_call(live, lambda e: e.score("rerank", spec["query"], documents)).scores
    np.testing.assert_allclose(scores, expected, atol=1e-6)


def test_reranker_error_is_read_as_a_string(live):
    spec = fixture("reranker-transformers")
    base = fill(spec["base"], gateway=live[0].url, model=MODEL)  # an embedder cannot rerank
    response = send(base + "/rerank", "POST", spec["headers"], go_json({"query": "q", "documents": ["d"], "property": ""}))
    assert response.status_code == 422 and isinstance(response.json()["error"], str)


# ---- text2multivec-jinaai ------------------------------------------------------------
def test_jinaai_multivector_objects_and_query(live):
    spec = fixture("text2multivec-jinaai")
    for name, input_type in (("objects", "document"), ("query", "document")):  # no query signal from this module
        request = spec["requests"][name]
        body = fill(request["body"], model="colbert")
        if name == "query":
            assert body["input"] == [" ".join(sorted(request["concepts"]))]
        response = send(live[0].url + request["path"], "POST", spec["headers"], go_json(body))
        assert response.status_code == 200
        payload = response.json()
        assert len(payload["data"]) == len(body["input"])
        by_index = {item["index"]: item["embeddings"] for item in payload["data"]}
        expected = engine_call(live, lambda e: e.encode("colbert", body["input"], input_type=input_type,
                                                        output="multivector")).embeddings
        for i, want in enumerate(expected):
            np.testing.assert_allclose(by_index[i], want, atol=1e-5)
    error = send(live[0].url + "/v1/multi-vector", "POST", spec["headers"],
                 go_json({"input": ["x"], "model": MODEL, "embedding_type": "float"}))
    assert error.status_code == 422 and isinstance(error.json()["detail"], str)


# ---- text2vec-openai, cohere, huggingface, ollama ------------------------------------
def test_openai_module_reads_floats_and_rate_limit_headers(live, minilm_reference):
    spec = fixture("text2vec-openai")
    body = fill(spec["request"]["body"], model=MODEL)
    response = send(live[0].url + spec["request"]["path"], "POST", spec["headers"], go_json(body))
    assert response.status_code == 200
    for header in spec["rate_limit_headers"]:
        assert header in response.headers
    assert response.headers["x-ratelimit-reset-requests"] == "1s" and int(response.headers["x-ratelimit-remaining-requests"]) > 0
    vectors = [item["embedding"] for item in response.json()["data"]]
    np.testing.assert_allclose(vectors, minilm_reference.encode(body["input"], normalize_embeddings=True), atol=1e-4)
    error = send(live[0].url + "/v1/embeddings", "POST", spec["headers"], go_json({"input": ["a"], "model": "nope"}))
    assert error.status_code == 404 and set(error.json()["error"]) == set(spec["error_shape"]["error"])


def test_jinaai_dense_module_places_by_index(live, minilm_reference):
    spec = fixture("text2vec-jinaai")
    body = fill(spec["request"]["body"], model=MODEL)
    response = send(live[0].url + spec["request"]["path"], "POST", spec["headers"], go_json(body))
    assert response.status_code == 200
    placed = {item["index"]: item["embedding"] for item in response.json()["data"]}
    np.testing.assert_allclose([placed[i] for i in range(len(body["input"]))],
                               minilm_reference.encode(body["input"], normalize_embeddings=True), atol=1e-4)


def test_cohere_modules_through_double_slashes(live, minilm_reference):
    spec = fixture("cohere")
    for name in ("embed_objects", "embed_query"):
        request = spec["requests"][name]
        body = fill(request["body"], model=MODEL)
        assert request["path"].startswith("//")
        response = send(live[0].url + request["path"], "POST", spec["headers"], go_json(body))
        assert response.status_code == 200
        np.testing.assert_allclose(response.json()["embeddings"]["float"],
                                   minilm_reference.encode(body["texts"], normalize_embeddings=True), atol=1e-4)
    request = spec["requests"]["rerank"]
    body = fill(request["body"], reranker="rerank")
    response = send(live[0].url + request["path"], "POST", spec["headers"], go_json(body))
    results = response.json()["results"]
    assert sorted(r["index"] for r in results) == list(range(len(body["documents"])))  # every document back
    expected = engine_call(live, lambda e: e.score("rerank", body["query"], body["documents"])).scores
    np.testing.assert_allclose([expected[r["index"]] for r in results], [r["relevance_score"] for r in results],
                               atol=1e-6)
    error = send(live[0].url + request["path"], "POST", spec["headers"], go_json({**body, "model": MODEL}))
    assert error.status_code == 422 and set(error.json()) == {"message"}


def test_huggingface_and_ollama_modules(live, minilm_reference):
    spec = fixture("huggingface-ollama")
    for name in ("huggingface", "ollama"):
        request = spec["requests"][name]
        body = fill(request["body"], model=MODEL)
        response = send(live[0].url + fill(request["path"], model=MODEL), "POST", spec["headers"], go_json(body))
        assert response.status_code == 200
        payload = response.json()
        vectors = payload if name == "huggingface" else payload["embeddings"]
        texts = body.get("inputs") or body.get("input")
        np.testing.assert_allclose(vectors, minilm_reference.encode(texts, normalize_embeddings=True), atol=1e-4)
