"""The protocol adapters over real loopback HTTP: TEI, Cohere v2, Jina, Ollama and the
Weaviate module routes, for the real all-MiniLM-L6-v2 and tiny task models, with values
checked against each model's own library on the same inputs (tests/references.py:
sentence-transformers, its CrossEncoder and SparseEncoder, the transformers pipelines,
PyLate). Then bad input on every route: the protocol's own error shape and status, and the
server still serving."""

from __future__ import annotations

import base64

import httpx
import numpy as np
import pytest

from engine import Engine, EngineConfig
from tests import references, zoo
from tests.conftest import LiveServer

MODEL = "all-MiniLM-L6-v2"
TEXTS = ["The river runs through the valley.", "Coffee is brewed from roasted beans.",
         "Vector databases index embeddings for retrieval.", "Ünïcödé façade naïve"]
QUERY = "mountain river coffee"
DOCUMENTS = ["a river in the mountains", "espresso and coffee beans", "gpu memory and batch size",
             "the mountain river", "token attention layer"]


@pytest.fixture(scope="module")
def zoo_server(task_models, minilm_spec):
    specs = [minilm_spec] + task_models.specs(("rerank", "intent", "splade", "colbert"))
    config = EngineConfig(device="cpu", dtype="float32", max_inputs_per_request=64)
    with LiveServer(Engine(specs, config)) as live:
        yield live


@pytest.fixture(scope="module")
def http(zoo_server):
    with httpx.Client(base_url=zoo_server.url, timeout=60) as client:
        yield client


@pytest.fixture(scope="module")
def reference(minilm_reference):
    return minilm_reference.encode(TEXTS, normalize_embeddings=True)


@pytest.fixture(scope="module")
def rerank_scores(task_models):
    """CrossEncoder scores of DOCUMENTS against QUERY, in document order: (sigmoid, raw logits)."""
    folder = task_models.folder("rerank")
    return references.rerank_scores(folder, QUERY, DOCUMENTS), references.rerank_scores(folder, QUERY, DOCUMENTS,
                                                                                          raw_scores=True)


def _raw(http: httpx.Client, path: str) -> str:
    """An absolute URL that keeps `path` as written (httpx folds `//` when joining a base URL)."""
    return str(http.base_url).rstrip("/") + path


_close = references.assert_vectors_close


# ---- TEI -------------------------------------------------------------------------------
def test_tei_embed_matches_sentence_transformers(minilm_spec, http, reference):
    response = http.post(f"/tei/{MODEL}/embed", json={"inputs": TEXTS})
    assert response.status_code == 200 and response.headers["content-type"].startswith("application/json")
    _close(response.json(), reference)
    single = http.post(f"/tei/{MODEL}/embed", json={"inputs": TEXTS[0]}).json()
    _close(single, reference[:1])  # always batch-shaped
    raw = http.post(f"/tei/{MODEL}/embed", json={"inputs": TEXTS[:2], "normalize": False, "dimensions": 64}).json()
    _close(raw, references.dense(minilm_spec.path, TEXTS[:2], normalize=False, dimensions=64))
    query = http.post(f"/tei/{MODEL}/embed", json={"inputs": TEXTS[:2], "prompt_name": "query"}).json()
    _close(query, references.dense(minilm_spec.path, TEXTS[:2], input_type="query"))
    # Weaviate's text2vec-huggingface body: {"inputs": [...], "options": {}}
    _close(http.post(f"/tei/{MODEL}/embed", json={"inputs": TEXTS, "options": {"wait_for_model": True}}).json(),
           reference)


def test_tei_embed_sparse_and_embed_all(task_models, http):
    texts = ["coffee river", "mountain"]
    sparse = http.post("/tei/splade/embed_sparse", json={"inputs": texts}).json()
    references.assert_sparse_close([([v["index"] for v in got], [v["value"] for v in got]) for got in sparse],
                                   references.sparse(task_models.folder("splade"), texts))
    pylate = task_models.model("colbert")
    tokens = http.post("/tei/colbert/embed_all", json={"inputs": ["Hello, world!", "rivers"]}).json()
    expected = references.colbert_vectors(pylate, ["Hello, world!", "rivers"], is_query=False)
    assert len(tokens) == 2
    for got, want in zip(tokens, expected):
        _close(got, want)
    query = http.post("/tei/colbert/embed_all", json={"inputs": "which river", "prompt_name": "query"}).json()
    (want,) = references.colbert_vectors(pylate, ["which river"], is_query=True)
    assert want.shape[0] == 24  # query expansion: the query/document distinction is honoured
    _close(query[0], want)


def test_tei_rerank_sorted_with_text(http, rerank_scores):
    expected, raw = rerank_scores
    body = http.post("/tei/rerank/rerank", json={"query": QUERY, "texts": DOCUMENTS, "return_text": True}).json()
    references.assert_ranked(body, expected)
    assert all(r["text"] == DOCUMENTS[r["index"]] for r in body)
    plain = http.post("/tei/rerank/rerank", json={"query": QUERY, "texts": DOCUMENTS, "raw_scores": True}).json()
    assert "text" not in plain[0]
    references.assert_ranked(plain, raw)


def test_tei_predict_classifier_and_pairs(task_models, http, rerank_scores):
    expected = references.classifications(task_models.folder("intent"), ["refund my card", "server down"])
    one = http.post("/tei/intent/predict", json={"inputs": "refund my card"}).json()
    assert sorted(p["label"] for p in one) == sorted(zoo.INTENTS.values())
    np.testing.assert_allclose([p["score"] for p in one], [expected[0][p["label"]] for p in one],
                               atol=references.SCORE_ATOL)
    assert [p["score"] for p in one] == sorted((p["score"] for p in one), reverse=True)
    batch = http.post("/tei/intent/predict", json={"inputs": [["refund my card"], ["server down"]]}).json()
    assert len(batch) == 2 and batch[0] == one
    np.testing.assert_allclose([p["score"] for p in batch[1]], [expected[1][p["label"]] for p in batch[1]],
                               atol=references.SCORE_ATOL)
    pairs = [[QUERY, DOCUMENTS[0]], ["espresso", DOCUMENTS[1]], [QUERY, DOCUMENTS[2]]]  # not one shared query
    want = references.pair_scores(task_models.folder("rerank"), pairs)
    scored = http.post("/tei/rerank/predict", json={"inputs": pairs}).json()
    np.testing.assert_allclose([p[0]["score"] for p in scored], want, atol=references.SCORE_ATOL)
    pair = http.post("/tei/rerank/predict", json={"inputs": [QUERY, DOCUMENTS[0]]}).json()
    assert pair[0]["score"] == pytest.approx(rerank_scores[0][0], abs=references.SCORE_ATOL)
    raw = http.post("/tei/rerank/predict", json={"inputs": pairs, "raw_scores": True}).json()
    np.testing.assert_allclose([p[0]["score"] for p in raw], references.pair_scores(
        task_models.folder("rerank"), pairs, raw_scores=True), atol=references.SCORE_ATOL)


def test_tei_tokenize_and_info(minilm_spec, http):
    from transformers import AutoTokenizer

    text = "Hello, world! Ünïcödé"
    tokens = http.post(f"/tei/{MODEL}/tokenize", json={"inputs": text}).json()
    assert len(tokens) == 1
    assert [t["id"] for t in tokens[0]] == AutoTokenizer.from_pretrained(str(minilm_spec.path))(text)["input_ids"]
    first, *middle, last = tokens[0]
    assert first["special"] and first["text"] == "[CLS]" and last["text"] == "[SEP]"
    assert all(t["text"] == text[t["start"]:t["stop"]] for t in middle if not t["special"])
    bare = http.post(f"/tei/{MODEL}/tokenize", json={"inputs": [text, "a"], "add_special_tokens": False}).json()
    assert [t["id"] for t in bare[0]] == [t["id"] for t in middle] and len(bare) == 2
    info = http.get(f"/tei/{MODEL}/info").json()
    assert info["model_type"] == {"embedding": {"pooling": "mean"}}
    assert info["max_input_length"] == 256 and info["max_client_batch_size"] == 64 and info["model_dtype"] == "float32"
    assert "reranker" in http.get("/tei/rerank/info").json()["model_type"]
    assert http.get("/tei/intent/info").json()["model_type"]["classifier"]["id2label"] == {
        str(k): v for k, v in zoo.INTENTS.items()}


# ---- Cohere v2 -------------------------------------------------------------------------
def test_cohere_embed_and_double_slash(minilm_spec, http, reference):
    body = {"texts": TEXTS, "model": MODEL, "input_type": "search_document", "embedding_types": ["float"]}
    response = http.post(_raw(http, "//v2/embed"), json=body)  # Weaviate's text2vec-cohere with a trailing-slash baseURL
    assert response.status_code == 200
    payload = response.json()
    assert payload["id"] and payload["meta"] is not None
    _close(payload["embeddings"]["float"], reference)
    both = http.post("/v2/embed", json={**body, "embedding_types": ["float", "base64"], "output_dimension": 32}).json()
    decoded = [np.frombuffer(base64.b64decode(b), dtype="<f4") for b in both["embeddings"]["base64"]]
    np.testing.assert_array_equal(np.stack(decoded), np.asarray(both["embeddings"]["float"], dtype=np.float32))
    _close(decoded, references.dense(minilm_spec.path, TEXTS, dimensions=32))


def test_cohere_rerank_every_document_sorted(http, rerank_scores):
    expected, _ = rerank_scores
    body = {"documents": DOCUMENTS, "query": QUERY, "model": "rerank", "return_documents": False}
    payload = http.post(_raw(http, "//v2/rerank"), json=body).json()
    references.assert_ranked(payload["results"], expected, score="relevance_score")
    top = http.post("/v2/rerank", json={**body, "top_n": 2, "documents": [{"text": d} for d in DOCUMENTS]}).json()
    references.assert_ranked(top["results"], expected, score="relevance_score", top_n=2)


# ---- Jina ------------------------------------------------------------------------------
def test_jina_multivector_placed_by_index(task_models, http):
    pylate = task_models.model("colbert")
    texts = ["Hello, world!", "rivers and mountains", "a"]
    body = {"input": texts, "model": "colbert", "embedding_type": "float"}
    payload = http.post("/v1/multi-vector", json=body, headers={"Authorization": "Bearer any"}).json()
    assert payload["object"] == "list" and payload["usage"]["total_tokens"] > 0
    expected = references.colbert_vectors(pylate, texts, is_query=False)
    assert [d["index"] for d in payload["data"]] == [0, 1, 2]
    for item, want in zip(payload["data"], expected):
        assert item["object"] == "embeddings"
        _close(item["embeddings"], want)
    query = http.post("/v1/multi-vector", json={**body, "input": ["which river"], "input_type": "query"}).json()
    _close(query["data"][0]["embeddings"], references.colbert_vectors(pylate, ["which river"], is_query=True)[0])
    short = http.post("/v1/multi-vector", json={**body, "dimensions": 8}).json()
    for item, want in zip(short["data"], expected, strict=True):  # Matryoshka: cut to 8, renormalised
        cut = want[:, :8]
        _close(item["embeddings"], cut / np.linalg.norm(cut, axis=1, keepdims=True))


def test_jina_rerank_with_documents(http, rerank_scores):
    expected, _ = rerank_scores
    payload = http.post("/v1/rerank", json={"model": "rerank", "query": QUERY, "documents": DOCUMENTS,
                                            "top_n": 3}).json()
    assert payload["model"] == "rerank" and payload["usage"]["total_tokens"] > 0
    references.assert_ranked(payload["results"], expected, score="relevance_score", top_n=3)
    assert all(r["document"]["text"] == DOCUMENTS[r["index"]] for r in payload["results"])


# ---- Ollama ----------------------------------------------------------------------------
def test_ollama_embed_and_tags(minilm_spec, http, reference):
    payload = http.post("/api/embed", json={"model": MODEL, "input": TEXTS}).json()
    assert payload["model"] == MODEL and payload["prompt_eval_count"] > 0
    _close(payload["embeddings"], reference)
    single = http.post("/api/embed", json={"model": MODEL, "input": TEXTS[0], "dimensions": 48}).json()
    _close(single["embeddings"], references.dense(minilm_spec.path, TEXTS[:1], dimensions=48))
    legacy = http.post("/api/embeddings", json={"model": MODEL, "prompt": TEXTS[2]}).json()
    _close(legacy["embedding"], reference[2])
    names = [m["name"] for m in http.get("/api/tags").json()["models"]]
    assert names == [MODEL, "rerank", "intent", "splade", "colbert"]


# ---- Weaviate module routes ------------------------------------------------------------
def test_weaviate_vectors_meta_and_probes(minilm_spec, http, reference):
    base = f"/weaviate/{MODEL}"
    assert http.get(base + "/.well-known/ready").status_code == 204
    assert http.get(base + "/.well-known/live").status_code == 204
    meta = http.get(base + "/meta").json()
    assert meta["model"]["model_type"] == "bert"
    for path in ("/vectors", "/vectors/"):
        payload = http.post(base + path, json={"text": TEXTS[1], "dims": 0, "vector": None, "error": ""}).json()
        assert payload["dim"] == 384 and payload["text"] == TEXTS[1]
        _close(payload["vector"], reference[1])
    shortened = http.post(base + "/vectors", json={"text": TEXTS[1], "config": {
        "pooling_strategy": "masked_mean", "task_type": "query", "dimensions": 128}}).json()
    assert shortened["dim"] == 128
    _close(shortened["vector"], references.dense(minilm_spec.path, TEXTS[1:2], input_type="query", dimensions=128)[0])


def test_weaviate_rerank_in_input_order(http, rerank_scores):
    expected, _ = rerank_scores
    payload = http.post("/weaviate/rerank/rerank", json={"query": QUERY, "documents": DOCUMENTS, "property": ""}).json()
    assert payload["query"] == QUERY and payload["property"] is None and payload["score"] is None
    assert [s["document"] for s in payload["scores"]] == DOCUMENTS
    np.testing.assert_allclose([s["score"] for s in payload["scores"]], expected, atol=references.SCORE_ATOL)


# ---- bad input, every route ------------------------------------------------------------
TOO_MANY = [f"t{i}" for i in range(65)]

# (method, path, body, status, shape), shape: "tei" | "cohere" | "jina" | "ollama" | "weaviate"
BAD = [
    ("POST", f"/tei/{MODEL}/embed", b"{", 400, "tei"),
    ("POST", f"/tei/{MODEL}/embed", {"inputs": []}, 400, "tei"),
    ("POST", f"/tei/{MODEL}/embed", {"inputs": [1]}, 422, "tei"),
    ("POST", f"/tei/{MODEL}/embed", {"inputs": ["a", ""]}, 422, "tei"),
    ("POST", f"/tei/{MODEL}/embed", {"inputs": TOO_MANY}, 413, "tei"),
    ("POST", f"/tei/{MODEL}/embed", {"inputs": ["a"], "dimensions": 999}, 422, "tei"),
    ("POST", f"/tei/{MODEL}/embed", {"inputs": ["word " * 400], "truncate": False}, 422, "tei"),
    ("POST", f"/tei/{MODEL}/embed", {"inputs": ["a"], "truncation_direction": "Left"}, 422, "tei"),
    ("POST", f"/tei/{MODEL}/embed", {"inputs": ["a"], "prompt_name": "nope"}, 422, "tei"),
    ("POST", "/tei/nope/embed", {"inputs": ["a"]}, 404, "tei"),
    ("POST", f"/tei/{MODEL}/embed_sparse", {"inputs": ["a"]}, 422, "tei"),
    ("POST", f"/tei/{MODEL}/embed_all", {"inputs": ["a"]}, 422, "tei"),
    ("POST", f"/tei/{MODEL}/rerank", {"query": "q", "texts": ["d"]}, 422, "tei"),
    ("POST", "/tei/rerank/rerank", {"query": "q", "texts": []}, 400, "tei"),
    ("POST", "/tei/rerank/rerank", {"query": "q"}, 422, "tei"),
    ("POST", "/tei/intent/predict", {"inputs": ["a", "b", "c"]}, 422, "tei"),
    ("POST", "/tei/intent/predict", {"inputs": [["a"], ["b", "c"]]}, 422, "tei"),  # texts and pairs mixed
    ("POST", "/tei/intent/predict", {"inputs": 3}, 422, "tei"),
    ("POST", f"/tei/{MODEL}/predict", {"inputs": "a"}, 422, "tei"),
    ("POST", f"/tei/{MODEL}/tokenize", {"inputs": []}, 400, "tei"),
    ("GET", "/tei/nope/info", None, 404, "tei"),
    ("POST", "/v2/embed", b"{", 400, "cohere"),
    ("POST", "/v2/embed", {"model": MODEL, "texts": []}, 422, "cohere"),
    ("POST", "/v2/embed", {"model": MODEL, "texts": ["a"], "input_type": "image"}, 422, "cohere"),
    ("POST", "/v2/embed", {"model": MODEL, "texts": ["a"], "embedding_types": ["int4"]}, 422, "cohere"),
    ("POST", "/v2/embed", {"model": MODEL, "images": ["data:image/png;base64,AA=="]}, 422, "cohere"),
    ("POST", "/v2/embed", {"model": "nope", "texts": ["a"]}, 404, "cohere"),
    ("POST", "/v2/embed", {"model": MODEL, "texts": TOO_MANY}, 413, "cohere"),
    ("POST", "/v2/rerank", {"model": "rerank", "query": "q", "documents": [3]}, 422, "cohere"),
    ("POST", "/v2/rerank", {"model": "rerank", "query": "q", "documents": ["d"], "top_n": 0}, 422, "cohere"),
    ("POST", "//v2/rerank", {"model": MODEL, "query": "q", "documents": ["d"]}, 422, "cohere"),
    ("POST", "/v1/multi-vector", b"{", 400, "jina"),
    ("POST", "/v1/multi-vector", {"model": "colbert", "input": []}, 422, "jina"),
    ("POST", "/v1/multi-vector", {"model": MODEL, "input": ["a"]}, 422, "jina"),
    ("POST", "/v1/multi-vector", {"model": "colbert", "input": ["a"], "embedding_type": "binary"}, 422, "jina"),
    ("POST", "/v1/multi-vector", {"model": "colbert", "input": ["a"], "dimensions": 999}, 422, "jina"),
    ("POST", "/v1/multi-vector", {"model": "colbert", "input": ["a"], "task": "clustering"}, 422, "jina"),
    ("POST", "/v1/multi-vector", {"model": "nope", "input": ["a"]}, 404, "jina"),
    ("POST", "/v1/rerank", {"model": "rerank", "query": "q", "documents": []}, 422, "jina"),
    ("POST", "/v1/rerank", {"model": "rerank", "query": "", "documents": ["d"]}, 422, "jina"),
    ("POST", "/api/embed", b"{", 400, "ollama"),
    ("POST", "/api/embed", {"model": MODEL, "input": []}, 422, "ollama"),
    ("POST", "/api/embed", {"model": MODEL, "input": 5}, 422, "ollama"),
    ("POST", "/api/embed", {"model": "nope", "input": "a"}, 404, "ollama"),
    ("POST", "/api/embed", {"model": MODEL, "input": "word " * 400, "truncate": False}, 422, "ollama"),
    ("POST", "/api/embeddings", {"model": MODEL, "prompt": ""}, 422, "ollama"),
    ("POST", f"/weaviate/{MODEL}/vectors", b"{", 400, "weaviate"),
    ("POST", f"/weaviate/{MODEL}/vectors", {"text": ""}, 422, "weaviate"),
    ("POST", f"/weaviate/{MODEL}/vectors", {"dims": 0}, 422, "weaviate"),
    ("POST", f"/weaviate/{MODEL}/vectors", {"text": "a", "config": {"pooling_strategy": "max"}}, 422, "weaviate"),
    ("POST", f"/weaviate/{MODEL}/vectors", {"text": "a", "config": {"task_type": "image"}}, 422, "weaviate"),
    ("POST", f"/weaviate/{MODEL}/vectors", {"text": "a", "config": {"dimensions": 999}}, 422, "weaviate"),
    ("POST", "/weaviate/nope/vectors", {"text": "a"}, 404, "weaviate"),
    ("GET", "/weaviate/nope/.well-known/ready", None, 404, "weaviate"),
    ("GET", "/weaviate/nope/meta", None, 404, "weaviate"),
    ("POST", f"/weaviate/{MODEL}/rerank", {"query": "q", "documents": ["d"]}, 422, "weaviate"),
    ("POST", "/weaviate/rerank/rerank", {"query": "q", "documents": []}, 422, "weaviate"),
]

SHAPES = {
    "tei": lambda body: set(body) == {"error", "error_type"} and body["error_type"] in {
        "Validation", "Overloaded", "Unhealthy", "Backend", "Tokenizer", "Empty"},
    "cohere": lambda body: set(body) == {"message"},
    "jina": lambda body: set(body) == {"detail"},
    "ollama": lambda body: set(body) == {"error"} and isinstance(body["error"], str),
    "weaviate": lambda body: set(body) == {"error"} and isinstance(body["error"], str),
}


@pytest.mark.parametrize("method,path,body,status,shape", BAD, ids=[f"{b[0]} {b[1]} {i}" for i, b in enumerate(BAD)])
def test_bad_input_gets_the_protocols_error(http, method, path, body, status, shape):
    path = _raw(http, path)
    if isinstance(body, bytes):
        response = http.request(method, path, content=body, headers={"content-type": "application/json"})
    else:
        response = http.request(method, path, json=body)
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    payload = response.json()
    assert SHAPES[shape](payload), payload
    message = next(iter(v for k, v in payload.items() if k != "error_type"))
    assert isinstance(message, str) and message
    assert http.post(f"/tei/{MODEL}/embed", json={"inputs": "still serving"}).status_code == 200


def test_tei_statuses_name_their_error_types(http):
    assert http.post(f"/tei/{MODEL}/embed", json={"inputs": []}).json()["error_type"] == "Empty"
    assert http.post(f"/tei/{MODEL}/embed", json={"inputs": ["a", ""]}).json()["error_type"] == "Validation"
