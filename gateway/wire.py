"""Body encodings shared by every route: JSON, or msgpack when the client asks for it
(`Content-Type` / `Accept: application/msgpack`)."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request, Response
from litestar.exceptions import ClientException, HTTPException
from litestar.types import Empty

MSGPACK = "application/msgpack"
_MSGPACK_TYPES = (MSGPACK, "application/x-msgpack", "application/vnd.msgpack")


class ShoalRequest(Request):
    """A Request whose parsed body may be msgpack: Litestar's JSON body extractor calls
    `json()`, so one override gives every `data:` handler both encodings, and one place
    turns every undecodable body into a 400."""

    async def json(self) -> Any:
        if self._json is Empty and self._connection_state.json is not Empty:  # decoded for another Request
            self._json = self._connection_state.json
        if self._json is Empty:
            media = self.headers.get("content-type", "").split(";")[0].strip().lower()
            is_msgpack = media in _MSGPACK_TYPES
            if not (is_msgpack or media in ("", "application/json") or media.endswith("+json")
                    or self.route_handler.opt.get("any_content_type")):
                raise HTTPException(status_code=415, detail=f"a body of type {media!r} is not read here: send "
                                                            "Content-Type: application/json (or application/msgpack)")
            self._json = self._connection_state.json = decode_body(await self.body(), is_msgpack)
        return self._json


def decoded_body(request: Request) -> Any:
    """The body as ShoalRequest.json decoded it for this connection, or None when it was not
    decoded (error messages read it to name every missing field)."""
    body = request._connection_state.json  # Litestar's per-connection cache, shared by its Request objects
    return None if body is Empty else body


def decode_body(body: bytes, is_msgpack: bool) -> Any:
    """JSON or msgpack -> Python values. msgspec raises more than DecodeError on hostile
    input (RecursionError for deep nesting, UnicodeDecodeError for invalid UTF-8 in
    msgpack strings): all of them are the client's malformed body."""
    kind = "msgpack" if is_msgpack else "JSON"
    if not body:
        raise ClientException(f"the request body is empty; send a {kind} object")
    try:
        return msgspec.msgpack.decode(body) if is_msgpack else msgspec.json.decode(body)
    except RecursionError:
        raise ClientException(f"malformed {kind} body: nested too deeply") from None
    except (msgspec.DecodeError, UnicodeDecodeError, ValueError) as error:
        raise ClientException(f"malformed {kind} body: {error}") from None


def wants_msgpack(request: Request) -> bool:
    return any(kind in request.headers.get("accept", "") for kind in _MSGPACK_TYPES)


def respond(request: Request, content: Any, status_code: int = 200, headers: dict[str, str] | None = None) -> Response:
    """JSON by default; msgpack when the client's Accept header asks for it."""
    if wants_msgpack(request):
        return Response(msgspec.msgpack.encode(content), status_code=status_code, media_type=MSGPACK, headers=headers)
    return Response(msgspec.json.encode(content), status_code=status_code, media_type="application/json",
                    headers=headers)
