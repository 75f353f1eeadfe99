"""The Weaviate helpers: weaviate-client's own configuration objects, built by our helpers
and checked as the JSON the client sends to Weaviate; the module environment; and the
vectorizer for self-provided dense and ColBERT multivectors (query vs document)."""

from __future__ import annotations

import warnings

import weaviate  # noqa: E402,F401  (a dev dependency: a missing one must fail, not skip)

from connectors.weaviate import (ShoalVectorizer, jina_multivectors, module_env, self_provided_vectors,  # noqa: E402
                                 transformers_reranker, transformers_vectors)
from tests import references  # noqa: E402

BASE = "http://shoal.internal:8080"
MODEL = "all-MiniLM-L6-v2"


def test_text2vec_transformers_config_json():
    config = transformers_vectors(BASE + "/", MODEL, name="body", dimensions=128, source_properties=["body"])
    assert config.name == "body"
    assert config._to_dict() == {
        "vectorizer": {"text2vec-transformers": {"poolingStrategy": "masked_mean", "vectorizeClassName": True,
                                                 "inferenceUrl": f"{BASE}/weaviate/{MODEL}", "dimensions": 128,
                                                 "properties": ["body"]}},
        "vectorIndexType": "hnsw",
    }
    cls = transformers_vectors(BASE, "bge-small", pooling="cls")._to_dict()
    assert cls["vectorizer"]["text2vec-transformers"]["poolingStrategy"] == "cls"


def test_reranker_and_module_env():
    from weaviate.collections.classes.config import Rerankers

    assert transformers_reranker().reranker == Rerankers.TRANSFORMERS
    assert module_env(BASE, embedder=MODEL, reranker="rerank") == {
        "TRANSFORMERS_INFERENCE_API": f"{BASE}/weaviate/{MODEL}",
        "RERANKER_INFERENCE_API": f"{BASE}/weaviate/rerank",
        "DEFAULT_VECTORIZER_MODULE": "text2vec-transformers",
        "ENABLE_MODULES": "text2vec-transformers,reranker-transformers,text2multivec-jinaai",
    }


def test_jina_multivector_config_json():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the helper keeps weaviate-client's deprecation notice to itself
        config = jina_multivectors(BASE + "/", "colbert", dimensions=96)
    assert config.name == "colbert"
    assert config._to_dict() == {
        "vectorizer": {"text2multivec-jinaai": {"baseURL": BASE, "model": "colbert", "dimensions": 96}},
        "vectorIndexType": "hnsw",
        "vectorIndexConfig": {"multivector": {"enabled": True}},
    }


def test_self_provided_config_json():
    assert self_provided_vectors("colbert", multivector=True)._to_dict() == {
        "vectorizer": {"none": {}}, "vectorIndexType": "hnsw", "vectorIndexConfig": {"multivector": {"enabled": True}}}
    assert self_provided_vectors("dense")._to_dict() == {"vectorizer": {"none": {}}, "vectorIndexType": "hnsw"}


def test_configs_fit_a_collection_create_request():
    """The whole create-collection body the client would POST, as JSON."""
    from weaviate.classes.config import DataType, Property
    from weaviate.collections.classes.config import _CollectionConfigCreate

    create = _CollectionConfigCreate(
        name="Article", properties=[Property(name="body", data_type=DataType.TEXT)],
        vector_config=[transformers_vectors(BASE, MODEL, name="dense"), self_provided_vectors("colbert", True)],
        reranker_config=transformers_reranker(), generative_config=None, inverted_index_config=None,
        multi_tenancy_config=None, replication_config=None, sharding_config=None, references=None,
        description=None, vectorizer_config=None, vector_index_config=None)
    body = create._to_dict()
    assert body["class"] == "Article"
    assert body["vectorConfig"]["dense"]["vectorizer"]["text2vec-transformers"]["inferenceUrl"] == f"{BASE}/weaviate/{MODEL}"
    assert body["vectorConfig"]["colbert"]["vectorIndexConfig"]["multivector"]["enabled"] is True
    assert body["moduleConfig"] == {"reranker-transformers": {}}


def test_vectorizer_dense_and_colbert(task_server, task_models, minilm_spec, minilm_reference):
    texts = ["The Seine flows through Paris.", "Coffee grows on hills.", "A glacier carved the valley."]
    dense = ShoalVectorizer(task_server.url, MODEL, batch_size=2)
    vectors = dense.documents(texts)
    assert isinstance(vectors[0][0], float)
    references.assert_vectors_close(vectors, minilm_reference.encode(texts, normalize_embeddings=True))
    short = ShoalVectorizer(task_server.url, MODEL, dimensions=64)
    references.assert_vectors_close([short.query("rivers")],
                                    references.dense(minilm_spec.path, ["rivers"], input_type="query", dimensions=64))

    colbert = ShoalVectorizer(task_server.url, "colbert", multivector=True, batch_size=2)
    pylate = task_models.model("colbert")
    documents = colbert.documents(texts)
    assert len(documents) == len(texts)
    for got, want in zip(documents, references.colbert_vectors(pylate, texts, is_query=False)):
        references.assert_vectors_close(got, want)
    query = colbert.query("which river")
    (want,) = references.colbert_vectors(pylate, ["which river"], is_query=True)
    references.assert_vectors_close(query, want)
    assert len(query) == 24 != len(colbert.documents(["which river"])[0])  # the query/document distinction
    dense.close()
    short.close()
    colbert.close()
