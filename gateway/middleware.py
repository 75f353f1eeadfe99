"""ASGI wrappers that run before routing: repeated-slash collapsing (Weaviate's Cohere
module requests `//v2/rerank`), per-request metrics, and cancelling the work of clients
that hang up. Bearer keys are a guard (auth.py), so refusals come in each route's shape."""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

from .metrics import Metrics

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
