"""Operational routes: liveness, readiness, Prometheus metrics. Never behind auth."""

from __future__ import annotations

from litestar import Controller, Response, get

from engine import EngineAPI

from .errors import NativeError, error_handler, native_shape
from .metrics import Metrics
from .openapi import error_responses
from .state import Startup


class OpsController(Controller):
    tags = ["operations"]
    opt = {"open": True}  # probes and scrapes never carry keys
    exception_handlers = {Exception: error_handler(native_shape)}

    @get("/healthz", summary="The process is alive")
    async def healthz(self) -> dict[str, str]:
        return {"status": "ok"}

    @get("/readyz", summary="The server can take requests", responses=error_responses(NativeError, native_shape, (503,)))
    async def readyz(self, engine: EngineAPI, startup: Startup) -> Response[dict[str, str]]:
        if not engine.ready or not startup.preloaded:
            message = "starting up or shutting down"
        elif not engine.can_serve():
            # each error already names its model ("model 'x': ...")
            message = "no configured model can serve: " + "; ".join(m.error for m in engine.models() if m.error)
        else:
            return Response({"status": "ready"}, status_code=200)
        return Response({"error": {"type": "not_ready", "message": message}}, status_code=503)

    @get("/metrics", summary="Prometheus metrics", media_type="text/plain; version=0.0.4")
    async def metrics(self, metrics: Metrics) -> bytes:
        return metrics.exposition()
