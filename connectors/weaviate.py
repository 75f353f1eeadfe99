"""Weaviate helpers: collection configurations whose modules call Shoal, and a vectorizer
for self-provided (named, dense or ColBERT multi-) vectors.

    from connectors.weaviate import transformers_vectors, transformers_reranker, module_env
    client.collections.create("Article", vector_config=transformers_vectors("http://shoal:8080", "all-MiniLM-L6-v2"),
                              reranker_config=transformers_reranker())

The configuration helpers import `weaviate` (weaviate-client) when called, so importing
this module stays cheap; the vectorizer needs only the native client."""

from __future__ import annotations

import warnings
from typing import Any, Sequence

from .client import ShoalClient


def module_url(base_url: str, model: str) -> str:
    """The inference URL of a Weaviate inference-container module served by Shoal."""
    return f"{base_url.rstrip('/')}/weaviate/{model}"


def module_env(base_url: str, embedder: str | None = None, reranker: str | None = None) -> dict[str, str]:
    """Environment for a Weaviate server whose text2vec-transformers and reranker-transformers
    modules call Shoal (docker-compose `environment:` or a Helm `env:` list)."""
    env: dict[str, str] = {}
    modules = []
    if embedder:
        env["TRANSFORMERS_INFERENCE_API"] = module_url(base_url, embedder)
        modules.append("text2vec-transformers")
    if reranker:
        env["RERANKER_INFERENCE_API"] = module_url(base_url, reranker)
        modules.append("reranker-transformers")
    if embedder:
        env["DEFAULT_VECTORIZER_MODULE"] = "text2vec-transformers"
    env["ENABLE_MODULES"] = ",".join(modules + ["text2multivec-jinaai"])
    return env


def transformers_vectors(base_url: str, model: str, name: str | None = None, pooling: str = "masked_mean",
                         dimensions: int | None = None, source_properties: list[str] | None = None,
                         vector_index_config: Any = None):
    """`Configure.Vectors.text2vec_transformers` pointed at `/weaviate/{model}`. Weaviate sends
    `pooling` with every request and Shoal pools that way ("masked_mean" or "cls"): use the
    model's own pooling ("cls" for CLS-pooled models such as BGE) to get the vectors it was
    trained to give."""
    from weaviate.classes.config import Configure

    return Configure.Vectors.text2vec_transformers(name=name, inference_url=module_url(base_url, model),
                                                   pooling_strategy=pooling, dimensions=dimensions,
                                                   source_properties=source_properties,
                                                   vector_index_config=vector_index_config)


def transformers_reranker():
    """`Configure.Reranker.transformers()`. The reranker module reads its URL from the Weaviate
    server's environment only: set `RERANKER_INFERENCE_API` (see `module_env`)."""
    from weaviate.classes.config import Configure

    return Configure.Reranker.transformers()


def jina_multivectors(base_url: str, model: str, name: str = "colbert", dimensions: int | None = None,
                      source_properties: list[str] | None = None):
    """text2multivec-jinaai with its `baseURL` at Shoal: Weaviate posts to `{base}/v1/multi-vector`
    and stores the ColBERT token vectors in a multi-vector HNSW index. The module sends no
    query/document signal; use `ShoalVectorizer` with self-provided vectors when that matters."""
    from weaviate.classes.config import Configure

    module_config: dict[str, Any] = {"baseURL": base_url.rstrip("/"), "model": model}
    if dimensions is not None:
        module_config["dimensions"] = dimensions
    with warnings.catch_warnings():  # the hnsw(multi_vector=...) form is the one that carries a custom module
        warnings.simplefilter("ignore", DeprecationWarning)
        index = Configure.VectorIndex.hnsw(multi_vector=Configure.VectorIndex.MultiVector.multi_vector())
    return Configure.Vectors.custom(name=name, module_name="text2multivec-jinaai", module_config=module_config,
                                    source_properties=source_properties, vector_index_config=index)


def self_provided_vectors(name: str = "default", multivector: bool = False):
    """A named vector the user fills with `ShoalVectorizer` output (dense, or ColBERT when `multivector`)."""
    from weaviate.classes.config import Configure

    if multivector:
        return Configure.MultiVectors.self_provided(name=name)
    return Configure.Vectors.self_provided(name=name)


class ShoalVectorizer:
    """Vectors for Weaviate objects and queries, computed by Shoal with the query/document
    distinction Weaviate's modules cannot express.

        colbert = ShoalVectorizer("http://shoal:8080", "colbert", multivector=True)
        articles.data.insert_many([DataObject(properties=p, vector={"colbert": v})
                                   for p, v in zip(rows, colbert.documents([r["body"] for r in rows]))])
        articles.query.near_vector(colbert.query("how do rivers form"), target_vector="colbert")
    """

    def __init__(self, base_url: str, model: str, multivector: bool = False, dimensions: int | None = None,
                 api_key: str | None = None, batch_size: int = 64, timeout: float = 60.0):
        self.model = model
        self.multivector = multivector
        self.dimensions = dimensions
        self.batch_size = batch_size
        self.client = ShoalClient(base_url, model=model, api_key=api_key, timeout=timeout)

    def _encode(self, texts: Sequence[str], input_type: str) -> list:
        vectors: list = []
        texts = list(texts)
        for start in range(0, len(texts), self.batch_size):
            chunk = texts[start:start + self.batch_size]
            if self.multivector:
                encoding = self.client.encode(chunk, input_type=input_type, output="multivector")
                vectors.extend(v.tolist() for v in encoding.embeddings)
            else:
                encoding = self.client.encode(chunk, input_type=input_type, dimensions=self.dimensions)
                vectors.extend(encoding.embeddings.tolist())
        return vectors

    def documents(self, texts: Sequence[str]) -> list:
        """One vector per text (a list of token vectors per text for ColBERT), as plain lists."""
        return self._encode(texts, "document")

    def query(self, text: str) -> list:
        """The vector of one query, ready for `near_vector(..., target_vector=name)`."""
        return self._encode([text], "query")[0]

    def close(self) -> None:
        self.client.close()
