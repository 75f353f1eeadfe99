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
from tests import references
from tests.conftest import LiveServer

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "weaviate"
MODEL = "all-MiniLM-L6-v2"


def fixture(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.json").read_text())


@pytest.fixture(scope="module")
def live(task_models, minilm_spec):
    specs = [minilm_spec] + task_models.specs(("rerank", "colbert"))
    with LiveServer(Engine(specs, EngineConfig(device="cpu", dtype="float32"))) as server:
        yield server


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
def test_transformers_startup_probes_and_meta(live, minilm_spec):
    spec = fixture("text2vec-transformers")
    base = fill(spec["base"], gateway=live.url, model=MODEL)
    for name in ("ready", "live"):
        request = spec["requests"][name]
        response = send(base + request["path"], "GET", spec["headers"], timeout=request.get("timeout_s", 50))
        low, high = request["expect_status"]
        assert low <= response.status_code <= high
    meta = send(base + "/meta", "GET", spec["headers"])
    assert meta.status_code == 200
    assert meta.json()["model"] == json.loads((minilm_spec.path / "config.json").read_text())  # the HF config


@pytest.mark.parametrize("name", ["object", "query", "object_with_dimensions", "trailing_slash"])
def test_transformers_vectorize_one_text(live, minilm_spec, name):
    spec = fixture("text2vec-transformers")
    request = spec["requests"][name]
    base = fill(spec["base"], gateway=live.url, model=MODEL)
    response = send(base + request["path"], request["method"], {**spec["headers"], **request.get("headers", {})},
                    request["raw_body"].encode())
    assert response.status_code == 200, response.text
    body = response.json()
    sent = json.loads(request["raw_body"])
    assert is_number_list(body["vector"]) and body["dims"] == len(body["vector"])
    assert body.get("error", "") == "" and body["text"] == sent["text"]
    input_type = "query" if sent["config"].get("task_type") == "query" else "document"
    expected = references.dense(minilm_spec.path, [sent["text"]], input_type=input_type,
                                dimensions=sent["config"].get("dimensions"))
    references.assert_vectors_close([body["vector"]], expected)


def test_transformers_cls_pooling_strategy(live, minilm_spec, minilm_reference):
    """pooling_strategy "cls" pools the [CLS] token instead of the model's mean (then normalises, as the model does)."""
    spec = fixture("text2vec-transformers")
    request = spec["requests"]["cls_pooling"]
    base = fill(spec["base"], gateway=live.url, model=MODEL)
    response = send(base + request["path"], "POST", spec["headers"], request["raw_body"].encode())
    assert response.status_code == 200, response.text
    text = json.loads(request["raw_body"])["text"]
    references.assert_vectors_close([response.json()["vector"]], references.dense(minilm_spec.path, [text], pooling="cls"))
    mean = minilm_reference.encode([text], normalize_embeddings=True)[0]
    assert float(np.dot(response.json()["vector"], mean)) < 0.99  # really a different pooling


def test_transformers_batch_format(live, minilm_reference):
    spec = fixture("text2vec-transformers")
    request = spec["requests"]["batch"]
    base = fill(spec["base"], gateway=live.url, model=MODEL)
    response = send(base + request["path"], "POST", {**spec["headers"], **request["headers"]},
                    request["raw_body"].encode())
    assert response.status_code == 200
    body = response.json()
    texts = json.loads(request["raw_body"])["texts"]
    assert len(body["vectors"]) == len(texts) and body["dims"] == 384 and body.get("error", "") == ""
    references.assert_vectors_close(body["vectors"], minilm_reference.encode(texts, normalize_embeddings=True))


def test_transformers_error_is_read_as_a_string(live):
    spec = fixture("text2vec-transformers")
    request = spec["requests"]["unknown_pooling"]
    base = fill(spec["base"], gateway=live.url, model=MODEL)
    response = send(base + request["path"], "POST", spec["headers"], request["raw_body"].encode())
    assert response.status_code == 422
    assert isinstance(response.json()["error"], str) and "pool" in response.json()["error"]


def test_transformers_one_text_per_request_under_concurrency(live, minilm_reference):
    """Weaviate's import: one request per object, many in flight. Each answer must be its own text's vector."""
    spec = fixture("text2vec-transformers")
    texts = spec["concurrent_objects"] * 4  # 48 requests, repeated texts included
    base = fill(spec["base"], gateway=live.url, model=MODEL)

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
    references.assert_vectors_close(got, reference)


# ---- reranker-transformers -----------------------------------------------------------
def test_reranker_chunked_parallel_requests_keep_input_order(live, task_models):
    spec = fixture("reranker-transformers")
    documents = [f"document {i} about {'rivers and valleys' if i % 3 == 0 else 'coffee and trains'} number {i}"
                 for i in range(spec["document_count"])]
    size = spec["chunk_size"]
    chunks = [documents[i:i + size] for i in range(0, len(documents), size)]
    base = fill(spec["base"], gateway=live.url, model="rerank")
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
        assert body["property"] is None and body["score"] is None  # what the reference container answers
        assert body.get("error", "") == ""
        assert [s["document"] for s in body["scores"]] == chunk  # score i belongs to document i
        scores += [s["score"] for s in body["scores"]]
    expected = references.rerank_scores(task_models.folder("rerank"), spec["query"], documents)
    np.testing.assert_allclose(scores, expected, atol=references.SCORE_ATOL)


def test_reranker_error_is_read_as_a_string(live):
    spec = fixture("reranker-transformers")
    base = fill(spec["base"], gateway=live.url, model=MODEL)  # an embedder cannot rerank
    response = send(base + "/rerank", "POST", spec["headers"], go_json({"query": "q", "documents": ["d"], "property": ""}))
    assert response.status_code == 422 and isinstance(response.json()["error"], str)


# ---- text2multivec-jinaai ------------------------------------------------------------
def test_jinaai_multivector_objects_and_query(live, task_models):
    spec = fixture("text2multivec-jinaai")
    for name in ("objects", "query"):  # no query signal from this module: documents both
        request = spec["requests"][name]
        body = fill(request["body"], model="colbert")
        if name == "query":
            assert body["input"] == [" ".join(sorted(request["concepts"]))]
        response = send(live.url + request["path"], "POST", spec["headers"], go_json(body))
        assert response.status_code == 200
        payload = response.json()
        assert len(payload["data"]) == len(body["input"])
        by_index = {item["index"]: item["embeddings"] for item in payload["data"]}
        expected = references.colbert_vectors(task_models.model("colbert"), body["input"], is_query=False)
        assert sorted(by_index) == list(range(len(expected)))
        for i, want in enumerate(expected):
            references.assert_vectors_close(by_index[i], want)
    error = send(live.url + "/v1/multi-vector", "POST", spec["headers"],
                 go_json({"input": ["x"], "model": MODEL, "embedding_type": "float"}))
    assert error.status_code == 422 and isinstance(error.json()["detail"], str)


# ---- text2vec-openai, cohere, huggingface, ollama ------------------------------------
def test_openai_module_reads_floats_and_rate_limit_headers(live, minilm_reference):
    spec = fixture("text2vec-openai")
    body = fill(spec["request"]["body"], model=MODEL)
    response = send(live.url + spec["request"]["path"], "POST", spec["headers"], go_json(body))
    assert response.status_code == 200
    for header in spec["rate_limit_headers"]:
        assert header in response.headers
    assert response.headers["x-ratelimit-reset-requests"] == "1s" and int(response.headers["x-ratelimit-remaining-requests"]) > 0
    vectors = [item["embedding"] for item in response.json()["data"]]
    references.assert_vectors_close(vectors, minilm_reference.encode(body["input"], normalize_embeddings=True))
    error = send(live.url + "/v1/embeddings", "POST", spec["headers"], go_json({"input": ["a"], "model": "nope"}))
    assert error.status_code == 404 and set(error.json()["error"]) == set(spec["error_shape"]["error"])


def test_jinaai_dense_module_places_by_index(live, minilm_reference):
    spec = fixture("text2vec-jinaai")
    body = fill(spec["request"]["body"], model=MODEL)
    response = send(live.url + spec["request"]["path"], "POST", spec["headers"], go_json(body))
    assert response.status_code == 200
    placed = {item["index"]: item["embedding"] for item in response.json()["data"]}
    assert sorted(placed) == list(range(len(body["input"])))
    references.assert_vectors_close([placed[i] for i in range(len(body["input"]))],
                                    minilm_reference.encode(body["input"], normalize_embeddings=True))


def test_cohere_modules_through_double_slashes(live, task_models, minilm_spec):
    spec = fixture("cohere")
    for name in ("embed_objects", "embed_query"):
        request = spec["requests"][name]
        body = fill(request["body"], model=MODEL)
        assert request["path"].startswith("//")
        response = send(live.url + request["path"], "POST", spec["headers"], go_json(body))
        assert response.status_code == 200
        input_type = "query" if body["input_type"] == "search_query" else "document"
        references.assert_vectors_close(response.json()["embeddings"]["float"],
                                        references.dense(minilm_spec.path, body["texts"], input_type=input_type))
    request = spec["requests"]["rerank"]
    body = fill(request["body"], reranker="rerank")
    response = send(live.url + request["path"], "POST", spec["headers"], go_json(body))
    expected = references.rerank_scores(task_models.folder("rerank"), body["query"], body["documents"])
    references.assert_ranked(response.json()["results"], expected, score="relevance_score")  # every document back
    error = send(live.url + request["path"], "POST", spec["headers"], go_json({**body, "model": MODEL}))
    assert error.status_code == 422 and set(error.json()) == {"message"}


def test_huggingface_and_ollama_modules(live, minilm_reference):
    spec = fixture("huggingface-ollama")
    for name in ("huggingface", "ollama"):
        request = spec["requests"][name]
        body = fill(request["body"], model=MODEL)
        response = send(live.url + fill(request["path"], model=MODEL), "POST", spec["headers"], go_json(body))
        assert response.status_code == 200
        payload = response.json()
        vectors = payload if name == "huggingface" else payload["embeddings"]
        texts = body.get("inputs") or body.get("input")
        references.assert_vectors_close(vectors, minilm_reference.encode(texts, normalize_embeddings=True))


# ---- ner-transformers ----------------------------------------------------------------
@pytest.fixture(scope="module")
def ner_live(task_models, minilm_spec, tmp_path_factory):
    """The tiny BERT token classifier as "ner", MiniLM (an embedder: no entities) and, where the
    gliner environment exists, a tiny GLiNER model the package built as "gliner"."""
    from engine import spec_from_folder
    from tests.engine.test_gliner_parity import (
        GLINER_PYTHON,
        MODELS,
        build_with_package,
        model_request,
    )

    specs = [minilm_spec] + task_models.specs(("ner",))
    if GLINER_PYTHON.exists():
        folder = tmp_path_factory.mktemp("ner-gliner") / "gliner"
        build_with_package([model_request(folder, MODELS["first"], [(["Ada lives in Paris"], (["person"], 0.5, True,
                                                                                                 False))], seed=4)])
        specs.append(spec_from_folder("gliner", folder))
    with LiveServer(Engine(specs, EngineConfig(device="cpu", dtype="float32"))) as server:
        yield server


def test_ner_startup_probe_and_meta_of_a_token_classifier(ner_live, task_models):
    spec = fixture("ner-transformers")
    base = fill(spec["base"], gateway=ner_live.url, model="ner")
    for name in ("ready", "live"):
        request = spec["requests"][name]
        response = send(base + request["path"], "GET", spec["headers"], timeout=request.get("timeout_s", 50))
        low, high = request["expect_status"]
        assert low <= response.status_code <= high
    meta = send(base + spec["requests"]["meta"]["path"], "GET", spec["headers"])
    assert meta.status_code == 200
    config = json.loads((task_models.folder("ner") / "config.json").read_text())
    assert meta.json()["model"] == config  # the HF config, id2label included, as the reference container's
    assert meta.json()["model"]["architectures"] == ["BertForTokenClassification"]


def test_ner_tokens_match_the_token_classification_pipeline(ner_live, task_models):
    """Each recorded request, as Weaviate sends it (no Content-Type, Go's escapes): one token per
    entity span of the transformers pipeline (aggregation "simple"): entity = entity_group,
    certainty = score, startPosition/endPosition = start/end, word = the input's own substring."""
    spec = fixture("ner-transformers")
    base = fill(spec["base"], gateway=ner_live.url, model="ner")
    found = 0
    for request in spec["requests"]["objects"]:
        response = send(base + request["path"], request["method"], spec["headers"], request["raw_body"].encode())
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("application/json")
        body = response.json()
        text = json.loads(request["raw_body"])["text"]
        assert body["text"] == text and set(body) == {"text", "tokens"}
        expected = references.entities(task_models.folder("ner"), [text])[0]
        tokens = body["tokens"]
        assert [set(t) for t in tokens] == [{"entity", "certainty", "word", "startPosition", "endPosition"}] * len(tokens)
        assert [(t["entity"], t["startPosition"], t["endPosition"]) for t in tokens] == \
               [(e["entity_group"], int(e["start"]), int(e["end"])) for e in expected]
        np.testing.assert_allclose([t["certainty"] for t in tokens], [float(e["score"]) for e in expected],
                                   atol=references.SCORE_ATOL)
        assert all(isinstance(t["startPosition"], int) and isinstance(t["certainty"], float) for t in tokens)
        assert [t["word"] for t in tokens] == [text[t["startPosition"]:t["endPosition"]] for t in tokens]
        found += len(tokens)
    assert found > 0  # the tiny tagger does find entities: the comparison is not vacuous


def test_ner_route_without_trailing_slash_and_an_empty_text(ner_live):
    spec = fixture("ner-transformers")
    base = fill(spec["base"], gateway=ner_live.url, model="ner")
    request = spec["requests"]["objects"][1]
    with_slash = send(base + "/ner/", "POST", spec["headers"], request["raw_body"].encode())
    without = send(base + "/ner", "POST", spec["headers"], request["raw_body"].encode())
    assert without.status_code == 200 and without.json() == with_slash.json()
    empty = spec["requests"]["empty_text"]
    response = send(base + empty["path"], "POST", spec["headers"], empty["raw_body"].encode())
    assert response.status_code == empty["reference_answer"]["status"]
    assert response.json()["text"] == "" and not response.json()["tokens"]  # the reference's null, as an empty list


@pytest.mark.parametrize("name", list(fixture("ner-transformers")["bad_bodies"]))
def test_ner_bad_bodies_are_json_errors_weaviate_reads(ner_live, name):
    """Weaviate decodes the body before the status: it must be JSON with an `error` string."""
    spec = fixture("ner-transformers")
    bad = spec["bad_bodies"][name]
    base = fill(spec["base"], gateway=ner_live.url, model="ner")
    response = send(base + "/ner/", "POST", spec["headers"], bad["raw_body"].encode())
    assert response.status_code == bad["status"] and response.status_code > 399
    assert response.headers["content-type"].startswith("application/json")
    assert set(response.json()) == {"error"} and isinstance(response.json()["error"], str) and response.json()["error"]
    assert send(base + "/.well-known/live", "GET", spec["headers"]).status_code == 204  # still serving


def test_ner_refuses_models_that_cannot_tag(ner_live):
    spec = fixture("ner-transformers")
    body = spec["requests"]["objects"][1]["raw_body"].encode()
    embedder = send(fill(spec["base"], gateway=ner_live.url, model=MODEL) + "/ner/", "POST", spec["headers"], body)
    assert embedder.status_code == 422 and "token-classification" in embedder.json()["error"]
    unknown = send(fill(spec["base"], gateway=ner_live.url, model="no-such-model") + "/ner/", "POST", spec["headers"],
                   body)
    assert unknown.status_code == 404 and isinstance(unknown.json()["error"], str)


def test_ner_on_a_gliner_model_is_a_422_about_labels(ner_live):
    from tests.engine.test_gliner_parity import GLINER_PYTHON, MISSING

    if not GLINER_PYTHON.exists():
        pytest.skip(MISSING)
    spec = fixture("ner-transformers")
    base = fill(spec["base"], gateway=ner_live.url, model="gliner")
    response = send(base + "/ner/", "POST", spec["headers"], spec["requests"]["objects"][1]["raw_body"].encode())
    assert response.status_code == 422
    message = response.json()["error"]
    assert "GLiNER" in message and "labels" in message and "/v1/extract" in message
    assert send(base + "/.well-known/ready", "GET", spec["headers"]).status_code == 204
