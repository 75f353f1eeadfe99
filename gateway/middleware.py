"""ASGI wrappers that run before routing: repeated-slash collapsing (Weaviate's Cohere
module requests `//v2/rerank`), bearer-key auth, and per-request metrics."""

from __future__ import annotations

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
    `Authorization: Bearer <key>`."""

    def __init__(self, app, keys: list[str]):
        self.app = app
        self.keys = [key.encode() for key in keys]

    def _allowed(self, scope) -> bool:
        if not self.keys or scope["path"] in OPEN_PATHS:
            return True
        for name, value in scope.get("headers", []):
            if name == b"authorization" and value[:7].lower() == b"bearer ":
                presented = value[7:].strip()
                return any(hmac.compare_digest(presented, key) for key in self.keys)
        return False

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or self._allowed(scope):
            return await self.app(scope, receive, send)
        body = msgspec.json.encode({"error": {"type": "unauthorized", "message": "missing or invalid API key",
                                              "param": None, "code": 401}})
        await send({"type": "http.response.start", "status": 401,
                    "headers": [(b"content-type", b"application/json"), (b"www-authenticate", b"Bearer"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


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
            route = scope.get("path_template") or "unmatched"
            model = scope.get("shoal.model", "")
            self.metrics.requests.labels(route, model, str(status["code"])).inc()
            self.metrics.request_seconds.labels(route, model).observe(time.perf_counter() - started)
