"""Chroma embedding functions backed by a Shoal gateway.

Importing this module registers both classes with Chroma, so a collection created with
them and reopened in another process rebuilds its EF from the persisted config:

    import chromadb
    from connectors.chroma import ShoalEmbeddingFunction
    ef = ShoalEmbeddingFunction(url="http://127.0.0.1:8080", model="all-MiniLM-L6-v2")
    collection = chromadb.PersistentClient("db").create_collection("docs", embedding_function=ef)

Construction is cheap and opens no connection (Chroma builds an EF from its config just to
check it). Documents are embedded with `input_type=document`, queries with `query`.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
from chromadb.api.types import Documents, EmbeddingFunction, Embeddings, SparseEmbeddingFunction, Space
from chromadb.base_types import SparseVector
from chromadb.utils.embedding_functions import register_embedding_function, register_sparse_embedding_function

from .client import ShoalClient

DEFAULT_URL = "http://127.0.0.1:8080"


class _ShoalEF:
    def __init__(self, url: str, model: str, api_key_env_var: str | None, timeout: float):
        if not model:
            raise ValueError("model is required")
        self.url = url
        self.model = model
        self.api_key_env_var = api_key_env_var
        self.timeout = timeout
        self._client: ShoalClient | None = None

    @property
    def client(self) -> ShoalClient:
        if self._client is None:  # made on first use, with the key read then
            key = os.environ.get(self.api_key_env_var) if self.api_key_env_var else None
            self._client = ShoalClient(self.url, model=self.model, api_key=key, timeout=self.timeout)
        return self._client

    @staticmethod
    def _texts(input: Any) -> list[str]:
        if isinstance(input, str):
            return [input]
        return list(input)

    def _base_config(self) -> dict[str, Any]:
        return {"url": self.url, "model": self.model, "api_key_env_var": self.api_key_env_var,
                "timeout": self.timeout}

    @staticmethod
    def validate_config(config: dict[str, Any]) -> None:
        if not isinstance(config.get("url"), str) or not isinstance(config.get("model"), str):
            raise ValueError("a Shoal EF config needs 'url' and 'model' strings")

    def validate_config_update(self, old_config: dict[str, Any], new_config: dict[str, Any]) -> None:
        if "model" in new_config and new_config["model"] != old_config.get("model"):
            raise ValueError("the model of a collection's embedding function cannot change: its vectors would not match")


@register_embedding_function
class ShoalEmbeddingFunction(_ShoalEF, EmbeddingFunction[Documents]):
    """Dense vectors from `POST /v1/encode`. `normalize=True` (the default) asks the gateway
    for unit vectors, and the collection's default space is then cosine."""

    def __init__(self, url: str = DEFAULT_URL, model: str = "", dimensions: int | None = None,
                 normalize: bool = True, api_key_env_var: str | None = None, timeout: float = 60.0):
        _ShoalEF.__init__(self, url, model, api_key_env_var, timeout)
        self.dimensions = dimensions
        self.normalize = normalize

    def _embed(self, input: Documents, input_type: str) -> Embeddings:
        texts = self._texts(input)
        if not texts:
            return []
        vectors = self.client.embed(texts, input_type=input_type, dimensions=self.dimensions,
                                    normalize=self.normalize)
        return [np.asarray(row, dtype=np.float32) for row in vectors]

    def __call__(self, input: Documents) -> Embeddings:
        return self._embed(input, "document")

    def embed_query(self, input: Documents) -> Embeddings:
        return self._embed(input, "query")

    @staticmethod
    def name() -> str:
        return "shoal"

    def default_space(self) -> Space:
        return "cosine" if self.normalize else "l2"

    def supported_spaces(self) -> list[Space]:
        return ["cosine", "ip", "l2"] if self.normalize else ["l2", "cosine", "ip"]

    def get_config(self) -> dict[str, Any]:
        return {**self._base_config(), "dimensions": self.dimensions, "normalize": self.normalize}

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> "ShoalEmbeddingFunction":
        ShoalEmbeddingFunction.validate_config(config)
        return ShoalEmbeddingFunction(url=config["url"], model=config["model"], dimensions=config.get("dimensions"),
                                      normalize=config.get("normalize", True),
                                      api_key_env_var=config.get("api_key_env_var"),
                                      timeout=config.get("timeout", 60.0))

    def validate_config_update(self, old_config: dict[str, Any], new_config: dict[str, Any]) -> None:
        _ShoalEF.validate_config_update(self, old_config, new_config)
        for key in ("dimensions", "normalize"):
            if key in new_config and new_config[key] != old_config.get(key):
                raise ValueError(f"{key!r} of a collection's embedding function cannot change")


@register_sparse_embedding_function
class ShoalSparseEmbeddingFunction(_ShoalEF, SparseEmbeddingFunction[Documents]):
    """SPLADE vectors from `POST /v1/encode` with `output=sparse`, as Chroma `SparseVector`s
    (indices strictly ascending). `top_k` keeps the largest weights; `return_labels` adds
    the vocabulary token of each index."""

    def __init__(self, url: str = DEFAULT_URL, model: str = "", top_k: int | None = None,
                 return_labels: bool = False, api_key_env_var: str | None = None, timeout: float = 60.0):
        _ShoalEF.__init__(self, url, model, api_key_env_var, timeout)
        self.top_k = top_k
        self.return_labels = return_labels

    def _embed(self, input: Documents, input_type: str) -> list[SparseVector]:
        texts = self._texts(input)
        if not texts:
            return []
        encoding = self.client.encode(texts, input_type=input_type, output="sparse", top_k=self.top_k,
                                      return_labels=self.return_labels)
        labels = encoding.labels or [None] * len(texts)
        return [SparseVector(indices=[int(i) for i in indices], values=[float(v) for v in values], labels=names)
                for (indices, values), names in zip(encoding.embeddings, labels)]

    def __call__(self, input: Documents) -> list[SparseVector]:
        return self._embed(input, "document")

    def embed_query(self, input: Documents) -> list[SparseVector]:
        return self._embed(input, "query")

    @staticmethod
    def name() -> str:
        return "shoal_sparse"

    def get_config(self) -> dict[str, Any]:
        return {**self._base_config(), "top_k": self.top_k, "return_labels": self.return_labels}

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> "ShoalSparseEmbeddingFunction":
        ShoalSparseEmbeddingFunction.validate_config(config)
        return ShoalSparseEmbeddingFunction(url=config["url"], model=config["model"], top_k=config.get("top_k"),
                                            return_labels=config.get("return_labels", False),
                                            api_key_env_var=config.get("api_key_env_var"),
                                            timeout=config.get("timeout", 60.0))
