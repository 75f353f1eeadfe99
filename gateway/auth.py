"""Bearer keys, checked as a Litestar guard: after routing, so a refusal is rendered by the
route's own exception handler in its protocol's error shape (a TEI client reads
`{"error", "error_type"}`, a Cohere client `{"message"}`), and before the body is read.

When keys are configured, every route but health and metrics needs a matching
`Authorization: Bearer <key>`. Operator keys, when set, are the only keys that may load and
unload models (routes marked `opt={"operator": True}`), and are accepted everywhere else."""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from .errors import ApiError

CHALLENGE = {"WWW-Authenticate": "Bearer"}


@dataclass(frozen=True)
class Keys:
    inference: tuple[bytes, ...] = ()
    operator: tuple[bytes, ...] = ()

    @classmethod
    def of(cls, inference: tuple[str, ...], operator: tuple[str, ...]) -> "Keys":
        return cls(tuple(k.encode() for k in inference), tuple(k.encode() for k in operator))


async def require_key(connection: ASGIConnection, handler: BaseRouteHandler) -> None:
    keys: Keys = connection.app.state.bearer_keys
    if handler.opt.get("open"):
        return
    presented = _bearer(connection)
    is_operator = presented is not None and _matches(presented, keys.operator)
    if handler.opt.get("operator") and keys.operator:
        if is_operator:
            return
        if presented is not None and _matches(presented, keys.inference):
            raise ApiError(403, "forbidden", "this key may not load or unload models; use an operator key")
        raise ApiError(401, "unauthorized", "missing or invalid operator key", CHALLENGE)
    if not keys.inference or is_operator or (presented is not None and _matches(presented, keys.inference)):
        return
    raise ApiError(401, "unauthorized", "missing or invalid API key", CHALLENGE)


def _bearer(connection: ASGIConnection) -> bytes | None:
    value = connection.headers.get("authorization", "")
    return value[7:].strip().encode() if value[:7].lower() == "bearer " else None


def _matches(presented: bytes, keys: tuple[bytes, ...]) -> bool:
    return any(hmac.compare_digest(presented, key) for key in keys)
