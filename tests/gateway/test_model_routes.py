"""The native routes for every model task, over real loopback HTTP: /v1/score,
/v1/classify, /v1/extract, and sparse / multivector /v1/encode. Values are checked against
the engine's own results (themselves checked against the reference libraries in
tests/engine); here the wire shapes, ordering, options and errors are the point."""

from __future__ import annotations


import httpx
import numpy as np
import pytest

from engine import Engine, EngineConfig
from tests import zoo
from tests.conftest import LiveServer, run_on, zoo_specs
from tests.texts import varied_texts

DOCUMENTS = varied_texts(20, seed=31)[6:]
QUERY = "mountain river coffee"


@pytest.fixture(scope="module")
def zoo_server(tmp_path_factory, minilm_spec):
    specs = [minilm_spec] + zoo_specs(tmp_path_factory.mktemp("zoo"), ("rerank", "intent", "ner", "splade", "colbert"))
    with LiveServer(Engine(specs, EngineConfig(device="cpu", dtype="float32"))) as live:
        reference = Engine(specs, EngineConfig(device="cpu", dtype="float32"))
        yield live, reference


def _engine_call(engine: Engine, coroutine_factory):
    return run_on(engine, coroutine_factory)


@pytest.fixture
def http(zoo_server):
    with httpx.Client(base_url=zoo_server[0].url, timeout=60) as client:
        yield client


def test_score_sorts_by_relevance_and_honours_top_n(zoo_server, http):
    _, reference = zoo_server
    expected = _engine_call(reference, lambda e: e.score("rerank", QUERY, DOCUMENTS)).scores
    body = http.post("/v1/score", json={"model": "rerank", "query": QUERY, "documents": DOCUMENTS}).json()
    assert [r["index"] for r in body["results"]] == sorted(range(len(DOCUMENTS)), key=lambda i: -expected[i])
    np.testing.assert_allclose([r["score"] for r in body["results"]], sorted(expected, reverse=True), atol=1e-6)
    assert body["usage"]["input_tokens"] > 0
    top = http.post("/v1/score", json={"model": "rerank", "query": QUERY, "documents": DOCUMENTS, "top_n": 3}).json()
    assert top["results"] == body["results"][:3]


def test_colbert_scores_through_the_score_route(zoo_server, http):
    _, reference = zoo_server
    expected = _engine_call(reference, lambda e: e.score("colbert", QUERY, DOCUMENTS)).scores
    body = http.post("/v1/score", json={"model": "colbert", "query": QUERY, "documents": DOCUMENTS}).json()
    by_index = {r["index"]: r["score"] for r in body["results"]}
    np.testing.assert_allclose([by_index[i] for i in range(len(DOCUMENTS))], expected, atol=1e-5)


def test_classify_returns_every_label_sorted(http):
    body = http.post("/v1/classify", json={"model": "intent", "inputs": ["refund my card", "the server is down"]}).json()
    assert len(body["results"]) == 2
    for result in body["results"]:
        scores = [label["score"] for label in result["labels"]]
        assert sorted(label["label"] for label in result["labels"]) == sorted(zoo.INTENTS.values())
        assert scores == sorted(scores, reverse=True) and sum(scores) == pytest.approx(1.0, abs=1e-5)


def test_extract_gives_character_offsets(http):
    texts = ["Angela Merkel visited Paris and Ünïcödé Straße in 2019.", "Dr. Jean-Luc Picard from La Barre"]
    body = http.post("/v1/extract", json={"model": "ner", "inputs": texts}).json()
    assert len(body["results"]) == 2 and any(r["entities"] for r in body["results"])
    for text, result in zip(texts, body["results"]):
        for entity in result["entities"]:
            assert entity["text"] == text[entity["start"]:entity["end"]]
            assert entity["label"] in {"PER", "LOC"} and 0 < entity["score"] <= 1


def test_sparse_encode_shape_labels_and_top_k(http):
    body = http.post("/v1/encode", json={"model": "splade", "inputs": ["coffee river", "mountain"], "output": "sparse",
                                         "return_labels": True, "top_k": 5}).json()
    assert body["output"] == "sparse"
    for vector in body["embeddings"]:
        assert len(vector["indices"]) == len(vector["values"]) == len(vector["labels"]) <= 5
        assert vector["indices"] == sorted(vector["indices"]) and all(v > 0 for v in vector["values"])
    plain = http.post("/v1/encode", json={"model": "splade", "inputs": ["coffee"], "output": "sparse"}).json()
    assert "labels" not in plain["embeddings"][0]


def test_multivector_encode_queries_and_documents(http):
    query = http.post("/v1/encode", json={"model": "colbert", "inputs": ["which river"], "output": "multivector",
                                          "input_type": "query"}).json()
    (vectors,) = query["embeddings"]
    assert np.array(vectors).shape == (24, 16)  # expanded to the query length
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    document = http.post("/v1/encode", json={"model": "colbert", "inputs": ["Hello, world!"], "output": "multivector"})
    # [CLS] [D] hello , world ! [SEP]: the punctuation skiplist drops "," and "!"
    assert len(document.json()["embeddings"][0]) == 5


@pytest.mark.parametrize("path,body", [
    ("/v1/score", {"model": "all-MiniLM-L6-v2", "query": "q", "documents": ["d"]}),
    ("/v1/classify", {"model": "rerank", "inputs": ["x"]}),
    ("/v1/extract", {"model": "intent", "inputs": ["x"]}),
    ("/v1/encode", {"model": "colbert", "inputs": ["x"], "output": "sparse"}),
    ("/v1/encode", {"model": "all-MiniLM-L6-v2", "inputs": ["x"], "output": "multivector"}),
])
def test_a_model_asked_for_what_it_cannot_give_is_422(http, path, body):
    response = http.post(path, json=body)
    assert response.status_code == 422
    assert response.json()["error"]["type"] == "unsupported_output"


@pytest.mark.parametrize("body", [
    {"model": "rerank", "query": "", "documents": ["d"]},
    {"model": "rerank", "query": "q", "documents": []},
    {"model": "rerank", "query": "q", "documents": ["d"], "top_n": 0},
    {"model": "rerank", "query": "q"},
])
def test_bad_score_requests(http, body):
    response = http.post("/v1/score", json=body)
    assert response.status_code == 422 and response.json()["error"]["message"]


def test_models_list_capabilities(http):
    capabilities = {m["id"]: m["capabilities"] for m in http.get("/v1/models").json()["data"]}
    assert capabilities == {"all-MiniLM-L6-v2": ["dense"], "rerank": ["score"], "intent": ["classify"],
                            "ner": ["extract"], "splade": ["sparse"], "colbert": ["multivector", "score"]}
