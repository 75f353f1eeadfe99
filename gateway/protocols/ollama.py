"""Ollama: POST /api/embed (and the older /api/embeddings) and GET /api/tags, with Ollama's `{"error": "..."}` bodies.
Chroma's OllamaEmbeddingFunction and Weaviate's text2vec-ollama point here."""

from __future__ import annotations

import time
from datetime import datetime, timezone
from functools import partial
from typing import Any

import msgspec
from litestar import Controller, Request, Response, get, post

from engine import EngineAPI

from ..errors import ApiError, error_handler
from ..openapi import INFERENCE, LISTING, error_responses
from ..wire import respond
from .common import deadline_from, note_model, texts_of


class OllamaError(msgspec.Struct):
    """Ollama's error body, as ollama_shape writes it."""

    error: str


def ollama_shape(error: ApiError) -> dict:
    return {"error": error.message}


# `responses=` for this controller's routes: the statuses each can answer, in Ollama's error body
errors = partial(error_responses, OllamaError, ollama_shape)


class EmbedRequest(msgspec.Struct):
    model: str
    input: Any  # str | [str]
    truncate: bool = True
    dimensions: int | None = None
    keep_alive: Any = None
    options: dict | None = None


class EmbedResponse(msgspec.Struct):
    model: str
    embeddings: list[list[float]]
    total_duration: int
    load_duration: int
    prompt_eval_count: int


class LegacyEmbeddingsRequest(msgspec.Struct):
    model: str
    prompt: str
    keep_alive: Any = None
    options: dict | None = None


class LegacyEmbeddingsResponse(msgspec.Struct):
    embedding: list[float]


class ModelDetails(msgspec.Struct):
    format: str
    family: str
    families: list[str]
    parameter_size: str
    quantization_level: str
    parent_model: str = ""


class TagModel(msgspec.Struct):
    name: str
    model: str
    modified_at: str
    size: int
    digest: str
    details: ModelDetails


class Tags(msgspec.Struct):
    models: list[TagModel]


def _parameters(count: int) -> str:
    return f"{count / 1e9:.1f}B" if count >= 1e9 else f"{count / 1e6:.1f}M"


class OllamaController(Controller):
    path = "/api"
    tags = ["ollama"]
    exception_handlers = {Exception: error_handler(ollama_shape)}

    @post("/embed", status_code=200, summary="Ollama embeddings", responses=errors(INFERENCE))
    async def embed(self, request: Request, data: EmbedRequest, engine: EngineAPI) -> Response[EmbedResponse]:
        started = time.perf_counter_ns()
        spec = note_model(request, engine, data.model)
        result = await engine.encode(spec.name, texts_of(data.input, "input"), dimensions=data.dimensions, truncate=data.truncate,
                                     deadline=deadline_from(request))
        body = EmbedResponse(spec.name, result.embeddings.tolist(), time.perf_counter_ns() - started, 0,
                             result.input_tokens)
        return respond(request, body)

    @post("/embeddings", status_code=200, summary="Ollama's older single-prompt embeddings",
          responses=errors(INFERENCE))
    async def embeddings(self, request: Request, data: LegacyEmbeddingsRequest,
                         engine: EngineAPI) -> Response[LegacyEmbeddingsResponse]:
        spec = note_model(request, engine, data.model)
        result = await engine.encode(spec.name, texts_of(data.prompt, "prompt"), deadline=deadline_from(request))
        return respond(request, LegacyEmbeddingsResponse(result.embeddings[0].tolist()))

    @get("/tags", summary="Ollama's model list", responses=errors(LISTING))
    async def list_models(self, request: Request, engine: EngineAPI, started_at: int) -> Response[Tags]:
        modified = datetime.fromtimestamp(started_at, timezone.utc).isoformat()
        models = []
        for status in engine.models():
            spec = engine.resolve(status.name)
            details = ModelDetails("safetensors", spec.model_type or "unknown", [spec.model_type or "unknown"],
                                   _parameters(spec.parameter_count), "F32")
            models.append(TagModel(status.name, status.name, modified, status.bytes or 0, "", details))
        return respond(request, Tags(models))
