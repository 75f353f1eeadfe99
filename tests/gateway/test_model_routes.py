"""The native routes for every model task, over real loopback HTTP: /v1/score,
/v1/classify, /v1/extract, and sparse / multivector /v1/encode. Values are checked against
each model's own library on the same inputs (tests/references.py: sentence-transformers
CrossEncoder and SparseEncoder, the transformers pipelines, PyLate), and the wire shapes,
ordering, options and errors besides."""

from __future__ import annotations

import httpx
import numpy as np
import pytest

from engine import Engine, EngineConfig
from tests import references, zoo
from tests.conftest import LiveServer
from tests.texts import varied_texts

DOCUMENTS = varied_texts(20, seed=31)[6:]
QUERY = "mountain river coffee"


@pytest.fixture(scope="module")
def zoo_server(task_models, minilm_spec):
    specs = [minilm_spec] + task_models.specs(("rerank", "intent", "ner", "splade", "colbert"))
    with LiveServer(Engine(specs, EngineConfig(device="cpu", dtype="float32"))) as live:
        yield live


@pytest.fixture
def http(zoo_server):
    with httpx.Client(base_url=zoo_server.url, timeout=60) as client:
        yield client


def test_score_sorts_by_relevance_and_honours_top_n(task_models, http):
    expected = references.rerank_scores(task_models.folder("rerank"), QUERY, DOCUMENTS)
    body = http.post("/v1/score", json={"model": "rerank", "query": QUERY, "documents": DOCUMENTS}).json()
    references.assert_ranked(body["results"], expected)
    assert body["usage"]["input_tokens"] > 0
    top = http.post("/v1/score", json={"model": "rerank", "query": QUERY, "documents": DOCUMENTS, "top_n": 3}).json()
    references.assert_ranked(top["results"], expected, top_n=3)
    raw = http.post("/v1/score", json={"model": "rerank", "query": QUERY, "documents": DOCUMENTS,
                                       "raw_scores": True}).json()
    references.assert_ranked(raw["results"], references.rerank_scores(task_models.folder("rerank"), QUERY, DOCUMENTS,
                                                                      raw_scores=True))


def test_colbert_scores_through_the_score_route(task_models, http):
    expected = references.colbert_scores(task_models.model("colbert"), QUERY, DOCUMENTS)
    body = http.post("/v1/score", json={"model": "colbert", "query": QUERY, "documents": DOCUMENTS}).json()
    references.assert_ranked(body["results"], expected)


def test_classify_returns_every_label_sorted(task_models, http):
    texts = ["refund my card", "the server is down", "Ünïcödé façade", "word " * 300]
    body = http.post("/v1/classify", json={"model": "intent", "inputs": texts}).json()
    assert len(body["results"]) == len(texts)
    for result, expected in zip(body["results"], references.classifications(task_models.folder("intent"), texts)):
        labels = [label["label"] for label in result["labels"]]
        scores = [label["score"] for label in result["labels"]]
        assert sorted(labels) == sorted(zoo.INTENTS.values()) == sorted(expected)
        np.testing.assert_allclose(scores, [expected[label] for label in labels], atol=references.SCORE_ATOL)
        assert scores == sorted(scores, reverse=True)


def test_extract_gives_character_offsets(task_models, http):
    texts = ["Angela Merkel visited Paris and Ünïcödé Straße in 2019.", "Dr. Jean-Luc Picard from La Barre",
             "no entities here, maybe"]
    body = http.post("/v1/extract", json={"model": "ner", "inputs": texts}).json()
    assert len(body["results"]) == len(texts)
    expected = references.entities(task_models.folder("ner"), texts)
    assert any(expected), "the tagger finds no entity: the comparison would be empty"
    for text, result, theirs in zip(texts, body["results"], expected):
        ours = result["entities"]
        assert [(e["label"], e["start"], e["end"]) for e in ours] == [(t["entity_group"], t["start"], t["end"])
                                                                    for t in theirs]
        np.testing.assert_allclose([e["score"] for e in ours], [t["score"] for t in theirs],
                                   atol=references.SCORE_ATOL)
        assert all(e["text"] == text[e["start"]:e["end"]] for e in ours)


def test_sparse_encode_values_labels_and_top_k(task_models, http):
    splade = task_models.folder("splade")
    texts = ["coffee river", "mountain", "Ünïcödé façade"]
    full = http.post("/v1/encode", json={"model": "splade", "inputs": texts, "output": "sparse",
                                         "return_labels": True}).json()
    assert full["output"] == "sparse"
    references.assert_sparse_close([(v["indices"], v["values"]) for v in full["embeddings"]],
                                   references.sparse(splade, texts))
    assert all(v["labels"] == references.sparse_labels(splade, v["indices"]) for v in full["embeddings"])
    top = http.post("/v1/encode", json={"model": "splade", "inputs": texts, "output": "sparse",
                                        "return_labels": True, "top_k": 5}).json()
    references.assert_sparse_close([(v["indices"], v["values"]) for v in top["embeddings"]],
                                   references.sparse(splade, texts, top_k=5))
    assert all(len(v["indices"]) == 5 and v["labels"] == references.sparse_labels(splade, v["indices"])
               for v in top["embeddings"])
    plain = http.post("/v1/encode", json={"model": "splade", "inputs": ["coffee"], "output": "sparse"}).json()
    assert "labels" not in plain["embeddings"][0]


def test_multivector_encode_queries_and_documents(task_models, http):
    pylate = task_models.model("colbert")
    queries = ["which river", "a b"]
    query = http.post("/v1/encode", json={"model": "colbert", "inputs": queries, "output": "multivector",
                                          "input_type": "query"}).json()
    for got, want in zip(query["embeddings"], references.colbert_vectors(pylate, queries, is_query=True), strict=True):
        assert want.shape == (24, 16)  # expanded to the query length
        references.assert_vectors_close(got, want)
    texts = ["Hello, world!", "rivers and mountains"]
    document = http.post("/v1/encode", json={"model": "colbert", "inputs": texts, "output": "multivector"}).json()
    expected = references.colbert_vectors(pylate, texts, is_query=False)
    # [CLS] [D] hello , world ! [SEP]: the punctuation skiplist drops "," and "!"
    assert len(expected[0]) == 5
    for got, want in zip(document["embeddings"], expected, strict=True):
        references.assert_vectors_close(got, want)


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
