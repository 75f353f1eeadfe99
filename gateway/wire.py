"""Body encodings shared by every route: JSON, or msgpack when the client asks for it
(`Content-Type` / `Accept: application/msgpack`)."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request, Response
from litestar.exceptions import SerializationException

MSGPACK = "application/msgpack"
_MSGPACK_TYPES = (MSGPACK, "application/x-msgpack", "application/vnd.msgpack")


class ShoalRequest(Request):
    """A Request whose parsed body may be msgpack: Litestar's JSON body extractor calls
    `json()`, so one override gives every `data:` handler both encodings."""

    async def json(self) -> Any:
        if self.headers.get("content-type", "").split(";")[0].strip().lower() in _MSGPACK_TYPES:
            body = await self.body()
            try:
                return msgspec.msgpack.decode(body) if body else None
            except msgspec.DecodeError as error:
                raise SerializationException(f"malformed msgpack body: {error}") from error
        return await super().json()


def wants_msgpack(request: Request) -> bool:
    return any(kind in request.headers.get("accept", "") for kind in _MSGPACK_TYPES)


def respond(request: Request, content: Any, status_code: int = 200, headers: dict[str, str] | None = None) -> Response:
    """JSON by default; msgpack when the client's Accept header asks for it."""
    if wants_msgpack(request):
        return Response(msgspec.msgpack.encode(content), status_code=status_code, media_type=MSGPACK, headers=headers)
    return Response(msgspec.json.encode(content), status_code=status_code, media_type="application/json",
                    headers=headers)
