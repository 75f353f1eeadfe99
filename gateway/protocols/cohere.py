"""Cohere v2: POST /v2/embed and POST /v2/rerank, with Cohere's `{"message"}` errors.
Weaviate's text2vec-cohere and reranker-cohere modules reach these as `//v2/...`; the
CollapseSlashes middleware folds the double slash before routing."""

from __future__ import annotations

import uuid
from functools import partial
from typing import Any

import msgspec
from litestar import Controller, Request, Response, post

from engine import EngineAPI

from ..errors import ApiError, error_handler
from ..openapi import INFERENCE, error_responses
from ..wire import respond
from .common import base64_floats, best_first, deadline_from, note_model, text_of

INPUT_TYPES = {"search_document": "document", "search_query": "query", "classification": "document",
               "clustering": "document"}
EMBEDDING_TYPES = ("float", "base64")


class CohereError(msgspec.Struct):
    """Cohere's error body, as cohere_shape writes it."""

    message: str


def cohere_shape(error: ApiError) -> dict:
    return {"message": error.message}


# `responses=` for this controller's routes: the statuses each can answer, in Cohere's error body
errors = partial(error_responses, CohereError, cohere_shape)


class EmbedRequest(msgspec.Struct):
    model: str
    texts: list[str] | None = None
    input_type: str = "search_document"
    embedding_types: list[str] | None = None
    output_dimension: int | None = None
    truncate: str | None = None  # "NONE" | "START" | "END"
    max_tokens: int | None = None
    images: list | None = None
    inputs: list | None = None


class RerankRequest(msgspec.Struct):
    model: str
    query: str
    documents: list[Any]  # str | {"text": str}
    top_n: int | None = None
    max_tokens_per_doc: int | None = None
    return_documents: bool = False
    rank_fields: list[str] | None = None


class RerankResult(msgspec.Struct):
    index: int
    relevance_score: float


class RerankResponse(msgspec.Struct):
    id: str
    results: list[RerankResult]
    meta: dict


def _meta(tokens: int) -> dict:
    return {"api_version": {"version": "2"}, "billed_units": {"input_tokens": tokens}}


class CohereController(Controller):
    path = "/v2"
    tags = ["cohere"]
    exception_handlers = {Exception: error_handler(cohere_shape)}

    @post("/embed", status_code=200, summary="Cohere v2 embeddings", responses=errors(INFERENCE))
    async def embed(self, request: Request, data: EmbedRequest, engine: EngineAPI) -> Response:
        spec = note_model(request, engine, data.model)
        if data.images or data.inputs:
            raise ApiError(422, "invalid_request", "only `texts` are supported; images and mixed inputs are not")
        if not data.texts:
            raise ApiError(422, "invalid_request", "`texts` must be a non-empty list of strings")
        if data.input_type not in INPUT_TYPES:
            raise ApiError(422, "invalid_request", f"input_type must be one of {sorted(INPUT_TYPES)}")
        types = data.embedding_types or ["float"]
        unknown = [t for t in types if t not in EMBEDDING_TYPES]
        if unknown:
            raise ApiError(422, "invalid_request", f"embedding_types {unknown} are not supported; use {EMBEDDING_TYPES}")
        if data.truncate is not None and data.truncate.upper() not in ("NONE", "END"):
            raise ApiError(422, "invalid_request", "truncate must be 'NONE' or 'END'")
        result = await engine.encode(spec.name, data.texts, input_type=INPUT_TYPES[data.input_type],
                                     dimensions=data.output_dimension,
                                     truncate=(data.truncate or "END").upper() != "NONE",
                                     deadline=deadline_from(request))
        embeddings: dict[str, list] = {}
        for kind in types:
            if kind == "float":
                embeddings["float"] = result.embeddings.tolist()
            else:
                embeddings["base64"] = [base64_floats(row) for row in result.embeddings]
        body = {"id": str(uuid.uuid4()), "embeddings": embeddings, "texts": data.texts,
                "meta": _meta(result.input_tokens), "response_type": "embeddings_by_type"}
        return respond(request, body)

    @post("/rerank", status_code=200, summary="Cohere v2 rerank, sorted by relevance", responses=errors(INFERENCE))
    async def rerank(self, request: Request, data: RerankRequest, engine: EngineAPI) -> Response[RerankResponse]:
        spec = note_model(request, engine, data.model)
        documents = [text_of(document, f"documents[{i}]") for i, document in enumerate(data.documents)]
        best_first([], data.top_n)  # a bad top_n is refused before any work
        result = await engine.score(spec.name, data.query, documents, deadline=deadline_from(request))
        results = [RerankResult(i, result.scores[i]) for i in best_first(result.scores, data.top_n)]
        return respond(request, RerankResponse(str(uuid.uuid4()), results, _meta(result.input_tokens)))
