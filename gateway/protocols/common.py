"""Small helpers every protocol adapter shares."""

from __future__ import annotations

import time

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
