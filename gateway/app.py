"""The Litestar application: controllers, dependencies, lifecycle, and the ASGI wrappers."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from litestar import Litestar
from litestar.datastructures import State
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig

from engine import Engine, EngineError

from . import __version__
from .errors import error_handler, native_shape
from .metrics import Metrics
from .middleware import BearerAuth, CancelOnDisconnect, CollapseSlashes, InFlight, RequestMetrics
from .ops import OpsController
from .protocols.cohere import CohereController
from .protocols.jina import JinaController
from .protocols.native import NativeController
from .protocols.ollama import OllamaController
from .protocols.openai import OpenAIController
from .protocols.tei import TEIController
from .protocols.weaviate import WeaviateController
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
    engine: Engine
    metrics: Metrics


def create_app(engine: Engine, settings: GatewaySettings = GatewaySettings()) -> Gateway:
    metrics = Metrics()
    engine.set_observer(metrics)
    metrics.attach(engine)
    in_flight = InFlight()
    preloaded: dict = {"done": not settings.preload}
    started_at = int(time.time())

    async def preload() -> None:
        for name in settings.preload:
            try:
                await engine.load(name)
            except EngineError as error:  # visible in /v1/models as `failed`; keep serving the rest
                log.error("preload failed", extra={"model": name, "reason": error.message})
        preloaded["done"] = True

    async def on_startup(app: Litestar) -> None:
        await engine.start()
        app.state.preload_task = asyncio.create_task(preload())

    async def on_shutdown(app: Litestar) -> None:
        await engine.stop(drain_seconds=settings.drain_seconds)

    app = Litestar(
        route_handlers=[NativeController, OpenAIController, OpsController, JinaController, CohereController,
                        OllamaController, TEIController, WeaviateController],
        dependencies={
            "engine": Provide(lambda: engine, use_cache=True, sync_to_thread=False),
            "metrics": Provide(lambda: metrics, use_cache=True, sync_to_thread=False),
            "started_at": Provide(lambda: started_at, use_cache=True, sync_to_thread=False),
            "preloaded": Provide(lambda: preloaded, sync_to_thread=False),
        },
        request_class=ShoalRequest,
        request_max_body_size=settings.max_body_bytes,
        exception_handlers={Exception: error_handler(native_shape)},
        openapi_config=OpenAPIConfig(title="Shoal", version=__version__,
                                     description="Many small models on one device: embeddings, rerankers, "
                                                 "ColBERT, SPLADE, classifiers."),
        on_startup=[on_startup],
        on_shutdown=[on_shutdown],
        state=State({"in_flight": in_flight}),
        logging_config=None,
    )
    asgi = CollapseSlashes(BearerAuth(RequestMetrics(CancelOnDisconnect(app), metrics, in_flight),
                                      list(settings.api_keys), list(settings.admin_keys)))
    return Gateway(asgi, app, engine, metrics)
