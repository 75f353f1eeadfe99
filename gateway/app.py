"""The Litestar application: controllers, dependencies, lifecycle, and the ASGI wrappers."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from litestar import Litestar
from litestar.datastructures import State
from litestar.di import Provide

from engine import EngineAPI, EngineError

from . import __version__
from .auth import Keys, require_key
from .docs import docs_assets, openapi_config
from .errors import error_handler, native_shape
from .metrics import Metrics
from .middleware import CancelOnDisconnect, CollapseSlashes, InFlight, RequestMetrics
from .openapi import StrictStructSchema
from .ops import OpsController
from .protocols.cohere import CohereController
from .protocols.jina import JinaController
from .protocols.native import NativeController
from .protocols.ollama import OllamaController
from .protocols.openai import OpenAIController
from .protocols.tei import TEIController
from .protocols.weaviate import WeaviateController
from .state import Startup, provide_engine, provide_metrics, provide_started_at, provide_startup
from .wire import ShoalRequest

log = logging.getLogger("shoal.gateway")


@dataclass(frozen=True)
class GatewaySettings:
    api_keys: tuple[str, ...] = ()
    admin_keys: tuple[str, ...] = ()  # the only keys that may load/unload models, when set
    max_body_bytes: int = 32 * 2**20
    preload: tuple[str, ...] = ()  # models loaded at start-up; /readyz waits for them
    drain_seconds: float = 30.0


@dataclass
class Gateway:
    asgi: object  # what the HTTP server runs
    litestar: Litestar
    engine: EngineAPI
    metrics: Metrics


def create_app(engine: EngineAPI, settings: GatewaySettings = GatewaySettings()) -> Gateway:
    """The Litestar app around `engine`: everything a handler needs lives in the app's state
    and reaches it through dependency injection."""
    metrics = Metrics()
    engine.set_observer(metrics)
    metrics.attach(engine)
    state = State({"engine": engine, "metrics": metrics, "started_at": int(time.time()), "in_flight": InFlight(),
                   "bearer_keys": Keys.of(settings.api_keys, settings.admin_keys),
                   "startup": Startup(preloaded=not settings.preload)})

    async def preload() -> None:
        for name in settings.preload:
            try:
                await engine.load(name)
            except EngineError as error:  # visible in /v1/models as `failed`; keep serving the rest
                log.error("preload failed", extra={"model": name, "reason": error.message})
        state.startup.preloaded = True

    async def on_startup(app: Litestar) -> None:
        await engine.start()
        app.state.preload_task = asyncio.create_task(preload())

    async def on_shutdown(app: Litestar) -> None:
        await engine.stop(drain_seconds=settings.drain_seconds)

    app = Litestar(
        route_handlers=[NativeController, OpenAIController, OpsController, JinaController, CohereController,
                        OllamaController, TEIController, WeaviateController, docs_assets()],
        dependencies={
            "engine": Provide(provide_engine, sync_to_thread=False),
            "metrics": Provide(provide_metrics, sync_to_thread=False),
            "started_at": Provide(provide_started_at, sync_to_thread=False),
            "startup": Provide(provide_startup, sync_to_thread=False),
        },
        guards=[require_key],
        request_class=ShoalRequest,
        request_max_body_size=settings.max_body_bytes,
        exception_handlers={Exception: error_handler(native_shape)},
        openapi_config=openapi_config(__version__),
        plugins=[StrictStructSchema()],  # additionalProperties: false for the native request bodies
        on_startup=[on_startup],
        on_shutdown=[on_shutdown],
        state=state,
        logging_config=None,
    )
    asgi = CollapseSlashes(RequestMetrics(CancelOnDisconnect(app), metrics, state.in_flight))
    return Gateway(asgi, app, engine, metrics)
