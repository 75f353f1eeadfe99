"""OpenAI embeddings: POST /v1/embeddings (float or base64), with the x-ratelimit-* headers
that Weaviate's text2vec-openai module needs to send more than one object per request."""

from __future__ import annotations

from functools import partial
from typing import Any, Literal

import msgspec
from litestar import Controller, Request, Response, post

from engine import EngineAPI

from ..errors import ApiError, OpenAIError, error_handler, openai_shape
from ..openapi import INFERENCE, error_responses
from ..wire import respond
from .common import base64_floats, deadline_from, note_model, texts_of

REQUESTS_PER_WINDOW = 10_000  # advertised request budget per reset window
# `responses=` for this controller's routes: the statuses each can answer, in OpenAI's error body
errors = partial(error_responses, OpenAIError, openai_shape)


class EmbeddingsRequest(msgspec.Struct):
    input: Any  # str | list[str]; token-id arrays are refused with a clear message
    model: str
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = None
    user: str | None = None


class EmbeddingObject(msgspec.Struct):
    object: str
    embedding: list[float] | str
    index: int


class EmbeddingsUsage(msgspec.Struct):
    prompt_tokens: int
    total_tokens: int


class EmbeddingsResponse(msgspec.Struct):
    object: str
    data: list[EmbeddingObject]
    model: str
    usage: EmbeddingsUsage


def texts_from(value: Any) -> list[str]:
    """OpenAI's `input`: strings; token-id arrays get a message saying why not."""
    if isinstance(value, list) and value and all(isinstance(v, (int, list)) for v in value):
        raise ApiError(422, "invalid_request",
                       "token-id input is not supported: this server tokenizes with each model's own tokenizer; "
                       "send strings")
    return texts_of(value, "input")


def rate_limit_headers(engine: EngineAPI, in_flight: int) -> dict[str, str]:
    limit = engine.info().max_queue_tokens
    return {
        "x-ratelimit-limit-requests": str(REQUESTS_PER_WINDOW),
        "x-ratelimit-remaining-requests": str(max(0, REQUESTS_PER_WINDOW - in_flight)),
        "x-ratelimit-reset-requests": "1s",
        "x-ratelimit-limit-tokens": str(limit),
        "x-ratelimit-remaining-tokens": str(max(0, limit - engine.queued_tokens())),
        "x-ratelimit-reset-tokens": "1s",
    }


def encode_vector(row, encoding_format: str) -> list[float] | str:
    return base64_floats(row) if encoding_format == "base64" else row.tolist()


class OpenAIController(Controller):
    path = "/v1"
    tags = ["openai"]
    exception_handlers = {Exception: error_handler(openai_shape)}

    @post("/embeddings", status_code=200, summary="OpenAI-compatible embeddings", responses=errors(INFERENCE))
    async def embeddings(self, request: Request, data: EmbeddingsRequest, engine: EngineAPI) -> Response[EmbeddingsResponse]:
        spec = note_model(request, engine, data.model)
        texts = texts_from(data.input)
        result = await engine.encode(spec.name, texts, dimensions=data.dimensions, deadline=deadline_from(request))
        body = EmbeddingsResponse(
            object="list",
            data=[EmbeddingObject("embedding", encode_vector(row, data.encoding_format), i)
                  for i, row in enumerate(result.embeddings)],
            model=spec.name,
            usage=EmbeddingsUsage(result.input_tokens, result.input_tokens),
        )
        in_flight = request.app.state.in_flight.value
        return respond(request, body, headers=rate_limit_headers(engine, in_flight))
