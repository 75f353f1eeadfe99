"""Small helpers every protocol adapter shares: the model and deadline of a request, input
texts, ranking by score, base64 vectors."""

from __future__ import annotations

import base64
import time
from typing import Any

import numpy as np
from litestar import Request

from engine import EngineAPI, ModelSpec

from ..errors import ApiError

DEADLINE_HEADER = "x-shoal-deadline-ms"


def note_model(request: Request, engine: EngineAPI, model: str) -> ModelSpec:
    """Resolve the model and remember it on the scope, for the request metrics' label."""
    spec = engine.resolve(model)
    request.scope["shoal.model"] = spec.name  # type: ignore[typeddict-unknown-key]
    return spec


def deadline_from(request: Request) -> float | None:
    """`X-Shoal-Deadline-Ms: 1500` -> a monotonic deadline 1.5 s from now."""
    raw = request.headers.get(DEADLINE_HEADER)
    if raw is None:
        return None
    try:
        milliseconds = float(raw)
    except ValueError:
        raise ApiError(400, "malformed_request", f"{DEADLINE_HEADER} must be a number of milliseconds") from None
    if milliseconds <= 0:
        raise ApiError(422, "invalid_request", f"{DEADLINE_HEADER} must be positive")
    return time.monotonic() + milliseconds / 1000


def best_first(scores, top_n: int | None = None) -> list[int]:
    """Indices by score, highest first (ties keep input order); `top_n` keeps the best n."""
    if top_n is not None and top_n < 1:
        raise ApiError(422, "invalid_request", "top_n must be at least 1")
    order = sorted(range(len(scores)), key=lambda i: scores[i], reverse=True)
    return order if top_n is None else order[:top_n]


def text_of(value: Any, where: str) -> str:
    """A text given as a string or as `{"text": ...}` (Cohere and Jina documents)."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("text"), str):
        return value["text"]
    raise ApiError(422, "invalid_request", f"{where} must be a string or an object with a 'text' string")


def texts_of(value: Any, field: str, objects: bool = False) -> list[str]:
    """A protocol's input field: one string or a non-empty list of strings (and, with
    `objects`, `{"text"}` objects); anything else is a 422 naming the field."""
    if isinstance(value, str) or (objects and isinstance(value, dict)):
        value = [value]
    if isinstance(value, list) and value and (objects or all(isinstance(v, str) for v in value)):
        return [text_of(v, f"{field}[{i}]") for i, v in enumerate(value)]
    kinds = "strings or {'text'} objects" if objects else "strings"
    raise ApiError(422, "invalid_request", f"`{field}` must be a string or a non-empty list of {kinds}")


def base64_floats(row: np.ndarray) -> str:
    """A vector as base64 of little-endian float32, as OpenAI's and Cohere's clients decode it."""
    return base64.b64encode(row.astype("<f4").tobytes()).decode("ascii")
