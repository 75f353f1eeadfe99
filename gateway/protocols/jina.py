"""Jina AI: POST /v1/multi-vector (what Weaviate's text2multivec-jinaai calls, ColBERT
token vectors) and POST /v1/rerank, with Jina's `{"detail"}` errors. Jina's dense
/v1/embeddings has the OpenAI shape and is served by the OpenAI adapter."""

from __future__ import annotations

from functools import partial
from typing import Any

import msgspec
from litestar import Controller, Request, Response, post

from engine import EngineAPI

from ..errors import ApiError, error_handler
from ..openapi import INFERENCE, error_responses
from ..wire import respond
from .common import best_first, deadline_from, note_model, text_of, texts_of

# Jina's task / input_type names -> the engine's input types
INPUT_TYPES = {"retrieval.query": "query", "query": "query", "retrieval.passage": "document",
               "passage": "document", "document": "document"}


class JinaError(msgspec.Struct):
    """Jina's error body, as jina_shape writes it."""

    detail: str


def jina_shape(error: ApiError) -> dict:
    return {"detail": error.message}


# `responses=` for this controller's routes: the statuses each can answer, in Jina's error body
errors = partial(error_responses, JinaError, jina_shape)


class MultiVectorRequest(msgspec.Struct):
    input: Any  # [str] | [{"text": str}] | str
    model: str
    embedding_type: str = "float"
    dimensions: int | None = None
    input_type: str | None = None
    task: str | None = None
    normalized: bool | None = None


class MultiVectorObject(msgspec.Struct):
    object: str
    index: int
    embeddings: list[list[float]]


class Usage(msgspec.Struct):
    total_tokens: int
    prompt_tokens: int


class MultiVectorResponse(msgspec.Struct):
    object: str
    model: str
    data: list[MultiVectorObject]
    usage: Usage


class RerankRequest(msgspec.Struct):
    model: str
    query: Any  # str | {"text": str}
    documents: list[Any]  # str | {"text": str}
    top_n: int | None = None
    return_documents: bool = True


class RerankDocument(msgspec.Struct):
    text: str


class RerankResult(msgspec.Struct, omit_defaults=True):
    index: int
    relevance_score: float
    document: RerankDocument | None = None


class RerankResponse(msgspec.Struct):
    model: str
    usage: Usage
    results: list[RerankResult]


class JinaController(Controller):
    path = "/v1"
    tags = ["jina"]
    exception_handlers = {Exception: error_handler(jina_shape)}

    @post("/multi-vector", status_code=200, summary="Jina multi-vector (ColBERT) embeddings",
          responses=errors(INFERENCE))
    async def multi_vector(self, request: Request, data: MultiVectorRequest,
                           engine: EngineAPI) -> Response[MultiVectorResponse]:
        spec = note_model(request, engine, data.model)
        texts = texts_of(data.input, "input", objects=True)
        if data.embedding_type != "float":
            raise ApiError(422, "invalid_request", "embedding_type must be 'float'")
        kind = data.input_type or data.task or "retrieval.passage"
        if kind not in INPUT_TYPES:
            raise ApiError(422, "invalid_request", f"input_type/task must be one of {sorted(INPUT_TYPES)}")
        result = await engine.encode(spec.name, texts, input_type=INPUT_TYPES[kind], output="multivector",
                                     dimensions=data.dimensions, deadline=deadline_from(request))
        data_objects = [MultiVectorObject("embeddings", i, vectors.tolist()) for i, vectors in enumerate(result.embeddings)]
        usage = Usage(result.input_tokens, result.input_tokens)
        return respond(request, MultiVectorResponse("list", spec.name, data_objects, usage))

    @post("/rerank", status_code=200, summary="Jina rerank, sorted by relevance", responses=errors(INFERENCE))
    async def rerank(self, request: Request, data: RerankRequest, engine: EngineAPI) -> Response[RerankResponse]:
        spec = note_model(request, engine, data.model)
        query = text_of(data.query, "query")
        documents = [text_of(document, f"documents[{i}]") for i, document in enumerate(data.documents)]
        best_first([], data.top_n)  # a bad top_n is refused before any work
        result = await engine.score(spec.name, query, documents, deadline=deadline_from(request))
        results = [RerankResult(i, result.scores[i], RerankDocument(documents[i]) if data.return_documents else None)
                   for i in best_first(result.scores, data.top_n)]
        usage = Usage(result.input_tokens, result.input_tokens)
        return respond(request, RerankResponse(spec.name, usage, results))
