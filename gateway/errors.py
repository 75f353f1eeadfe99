"""Turning every failure into a JSON error with the right status, in the caller's protocol
shape. Adapters raise ApiError or let EngineErrors through; one handler per protocol
renders them."""

from __future__ import annotations

import difflib
import logging
import re
from typing import Any, Callable

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException

from engine import EngineError, Overloaded
from engine.errors import public_reason

from .wire import decoded_body

log = logging.getLogger("shoal.gateway")


class ApiError(Exception):
    def __init__(self, status: int, kind: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.kind, self.message, self.headers = status, kind, message, headers or {}


def as_api_error(error: Exception, request: Request | None = None) -> ApiError:
    """Any exception -> (status, kind, message, headers), the one place that decides statuses.
    `request` (when there is one) lets a validation message name every missing or unknown field."""
    if isinstance(error, ApiError):
        return error
    if isinstance(error, Overloaded):
        return ApiError(429, error.kind, error.message, {"Retry-After": str(int(error.retry_after))})
    if isinstance(error, EngineError):  # no server path reaches a client, whatever raised it
        return ApiError(error.status, error.kind, public_reason(error.message, None))
    if isinstance(error, ValidationException):
        if _missing_body(error):
            return ApiError(400, "malformed_request", "the request body is empty; send a JSON object")
        return ApiError(422, "invalid_request", _validation_message(error, request))
    if isinstance(error, HTTPException):
        status = error.status_code
        kind = {400: "malformed_request", 401: "unauthorized", 404: "not_found", 405: "method_not_allowed",
                415: "unsupported_media_type",
                413: "request_too_large"}.get(status, "http_error")
        return ApiError(status, kind, error.detail or "request failed", dict(error.headers or {}))
    log.exception("unhandled error")
    return ApiError(500, "internal_error", f"internal error: {type(error).__name__}")


def _missing_body(error: ValidationException) -> bool:
    """Litestar reports an empty body as the handler's `data` argument missing (a KeyError)."""
    details = error.extra if isinstance(error.extra, list) else []
    return any(isinstance(d, dict) and d.get("key") == "data" and d.get("message") == "'data'" for d in details)


_MISSING = re.compile(r"^Object missing required field `([^`]*)`")
_UNKNOWN = re.compile(r"^Object contains unknown field `([^`]*)`")
_NOT_AN_OBJECT = re.compile(r"^Expected `object`, got `([^`]*)`")


def _validation_message(error: ValidationException, request: Request | None = None) -> str:
    """msgspec's validation errors in words a client can act on: `missing required field
    `model``, `unknown field `normalise` (did you mean `normalize`?)`, ``inputs`: expected
    `array`, got `str``. Litestar names the body `data` (the handler's argument): never shown."""
    details = error.extra if isinstance(error.extra, list) else []
    parts = [_explain(str(d.get("key") or ""), str(d.get("message") or ""), request)
             for d in details if isinstance(d, dict)]
    return "; ".join(p for p in parts if p) or error.detail or "invalid request"


def _explain(where: str, message: str, request: Request | None) -> str:
    at_body = where in ("", "data")
    fields, body = _body_fields(request) if at_body else ({}, None)
    if missing := _MISSING.match(message):
        names = [missing[1]]
        if isinstance(body, dict):  # msgspec stops at the first: name them all
            names = [name for name, required in fields.items() if required and name not in body] or names
        text = (f"missing required field `{names[0]}`" if len(names) == 1 else
                "missing required fields " + ", ".join(f"`{name}`" for name in names))
    elif unknown := _UNKNOWN.match(message):
        name, known = unknown[1], sorted(fields)
        text = f"unknown field `{name}`"
        if close := difflib.get_close_matches(name, known, n=1, cutoff=0.6):
            text += f" (did you mean `{close[0]}`?)"
        elif known:
            text += " (the fields are " + ", ".join(f"`{k}`" for k in known) + ")"
    elif at_body and (found := _NOT_AN_OBJECT.match(message)):
        return f"the request body must be an object, got `{found[1]}`"
    else:
        text = message[:1].lower() + message[1:]
    return text if at_body else f"`{where}`: {text}"


def _body_fields(request: Request | None) -> tuple[dict[str, bool], Any]:
    """The route's body fields (name -> required) and the decoded body, when the handler
    takes a msgspec Struct."""
    handler = getattr(request, "route_handler", None) if request is not None else None
    parameter = handler.parsed_fn_signature.parameters.get("data") if handler is not None else None
    kind = getattr(parameter, "annotation", None)
    if not (isinstance(kind, type) and issubclass(kind, msgspec.Struct)):
        return {}, None
    return {f.encode_name: f.required for f in msgspec.structs.fields(kind)}, decoded_body(request)


def error_handler(shape: Callable[[ApiError], Any]) -> Callable[[Request, Exception], Response]:
    """A Litestar exception handler that renders errors with `shape` (the protocol's body)."""

    def handle(request: Request, error: Exception) -> Response:
        api_error = as_api_error(error, request)
        return Response(shape(api_error), status_code=api_error.status, headers=api_error.headers,
                        media_type="application/json")

    return handle


class NativeErrorDetail(msgspec.Struct):
    type: str
    message: str


class NativeError(msgspec.Struct):
    """The native API's error body, as native_shape writes it (the OpenAPI schema's description)."""

    error: NativeErrorDetail


def native_shape(error: ApiError) -> dict:
    return {"error": {"type": error.kind, "message": error.message}}


class OpenAIErrorDetail(msgspec.Struct):
    message: str
    type: str  # OpenAI's error types: invalid_request_error, authentication_error, ...
    param: None
    code: str | None  # what went wrong, as a string (Shoal's error kind), as OpenAI's SDK reads it


class OpenAIError(msgspec.Struct):
    """OpenAI's error body, as openai_shape writes it."""

    error: OpenAIErrorDetail
    detail: str


# OpenAI's error `type` by status; Shoal's own kind goes in `code`
OPENAI_TYPES = {401: "authentication_error", 403: "permission_error", 404: "invalid_request_error",
                429: "rate_limit_error"}


def openai_shape(error: ApiError) -> dict:
    kind = OPENAI_TYPES.get(error.status, "invalid_request_error" if error.status < 500 else "api_error")
    # `detail` too: Weaviate's text2vec-jinaai module posts to this route and reads Jina's shape
    return {"error": {"message": error.message, "type": kind, "param": None, "code": error.kind},
            "detail": error.message}
