"""ASGI wrappers that run before routing: repeated-slash collapsing (Weaviate's Cohere
module requests `//v2/rerank`), bearer-key auth, per-request metrics, and cancelling the
work of clients that hang up."""

from __future__ import annotations

import asyncio
import hmac
import re
import time
from typing import Any

import msgspec

from .metrics import Metrics

OPEN_PATHS = ("/healthz", "/readyz", "/metrics")
_SLASHES = re.compile(r"/{2,}")


class InFlight:
    def __init__(self):
        self.value = 0


class CollapseSlashes:
    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] in ("http", "websocket") and "//" in scope["path"]:
            scope = dict(scope, path=_SLASHES.sub("/", scope["path"]))
            scope["raw_path"] = scope["path"].encode()
        await self.app(scope, receive, send)


class BearerAuth:
    """When keys are configured, every route but health and metrics needs a matching
    `Authorization: Bearer <key>`. Operator keys, when set, are the only keys that may load
    and unload models (and they are accepted everywhere else too)."""

    def __init__(self, app, keys: list[str], admin_keys: list[str] = ()):
        self.app = app
        self.keys = [key.encode() for key in keys]
        self.admin_keys = [key.encode() for key in admin_keys]

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            return await self.app(scope, receive, send)
        presented = _bearer(scope)
        is_admin = presented is not None and _matches(presented, self.admin_keys)
        if OPERATOR_PATH.match(scope["path"]) and self.admin_keys:
            if is_admin:
                return await self.app(scope, receive, send)
            if presented is not None and _matches(presented, self.keys):
                return await _refuse(send, 403, "forbidden", "this key may not load or unload models; "
                                                             "use an operator key")
            return await _refuse(send, 401, "unauthorized", "missing or invalid operator key")
        if not self.keys or is_admin or (presented is not None and _matches(presented, self.keys)):
            return await self.app(scope, receive, send)
        return await _refuse(send, 401, "unauthorized", "missing or invalid API key")


OPERATOR_PATH = re.compile(r"^/v1/models/[^/]+/(load|unload)$")


def _bearer(scope) -> bytes | None:
    for name, value in scope.get("headers", []):
        if name == b"authorization" and value[:7].lower() == b"bearer ":
            return value[7:].strip()
    return None


def _matches(presented: bytes, keys: list[bytes]) -> bool:
    return any(hmac.compare_digest(presented, key) for key in keys)


async def _refuse(send, status: int, kind: str, message: str) -> None:
    body = msgspec.json.encode({"error": {"type": kind, "message": message, "param": None, "code": status}})
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"www-authenticate", b"Bearer"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


class CancelOnDisconnect:
    """Cancels a request's handler when its client hangs up, so its queued work leaves the
    queue before it reaches the device (cancelling the handler cancels the engine future it
    awaits). uvicorn does not cancel handlers itself: it only answers a later `receive()`
    with `http.disconnect`. Once the app has read the whole body, this wrapper listens for
    that message and owns `receive` from then on."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        gone = asyncio.Event()
        listener: asyncio.Task | None = None

        async def listen() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            gone.set()

        async def app_receive():
            nonlocal listener
            if listener is not None:  # the body is read: later calls wait for the hang-up
                await gone.wait()
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.disconnect":
                gone.set()
            elif not message.get("more_body", False):
                listener = asyncio.ensure_future(listen())
            return message

        handler = asyncio.ensure_future(self.app(scope, app_receive, send))
        hung_up = asyncio.ensure_future(gone.wait())
        try:
            await asyncio.wait({handler, hung_up}, return_when=asyncio.FIRST_COMPLETED)
            if not handler.done():
                scope["shoal.disconnected"] = True  # type: ignore[typeddict-unknown-key]
                handler.cancel()
                await asyncio.wait({handler})  # raises only if this task itself is cancelled
            if not handler.cancelled():
                handler.result()  # the app's own errors propagate as before
        finally:
            for task in (handler, hung_up, listener):
                if task is not None and not task.done():
                    task.cancel()


class RequestMetrics:
    """Counts requests by route template, model and status; times them; tracks in-flight."""

    def __init__(self, app, metrics: Metrics, in_flight: InFlight):
        self.app = app
        self.metrics = metrics
        self.in_flight = in_flight

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] == "/metrics":
            return await self.app(scope, receive, send)
        status: dict[str, Any] = {"code": 500}

        async def send_and_record(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        started = time.perf_counter()
        self.in_flight.value += 1
        self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, send_and_record)
        finally:
            self.in_flight.value -= 1
            self.metrics.in_flight.dec()
            if scope.get("shoal.disconnected"):
                status["code"] = 499  # nginx's "client closed request"
            route = scope.get("path_template") or "unmatched"
            model = scope.get("shoal.model", "")
            self.metrics.requests.labels(route, model, str(status["code"])).inc()
            self.metrics.request_seconds.labels(route, model).observe(time.perf_counter() - started)
