"""The model pool: which models are resident, and loading them on demand.

Loads are single-flight: concurrent requests for a cold model wait for one load. A load
failure marks the model `failed` with its reason; the next request retries after a
cooldown."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, Callable

from .errors import ModelLoadError
from .served import ServedModel
from .spec import ModelSpec

RETRY_COOLDOWN_SECONDS = 10.0


@dataclass(eq=False)
class PoolEntry:
    spec: ModelSpec
    state: str = "disk"  # disk | loading | resident | failed
    served: ServedModel | None = None
    error: str | None = None
    failed_at: float = 0.0
    loads: int = 0
    last_used: float | None = None  # wall-clock seconds
    loading: asyncio.Future | None = None


class ModelPool:
    def __init__(self, specs: list[ModelSpec], load: Callable[[ModelSpec], ServedModel], executor: Executor | None,
                 observer: Any):
        self.entries = {spec.name: PoolEntry(spec) for spec in specs}
        self._load = load
        self.executor = executor  # set by Engine.start()
        self._observer = observer  # EngineObserver: model_loaded / model_load_failed

    async def get(self, name: str) -> ServedModel:
        entry = self.entries[name]
        entry.last_used = time.time()
        if entry.served is not None:
            return entry.served
        if entry.loading is None:
            if entry.state == "failed" and time.monotonic() - entry.failed_at < RETRY_COOLDOWN_SECONDS:
                raise ModelLoadError(entry.error or "load failed")
            entry.loading = asyncio.ensure_future(self._load_entry(entry))
        return await asyncio.shield(entry.loading)

    async def _load_entry(self, entry: PoolEntry) -> ServedModel:
        entry.state = "loading"
        started = time.perf_counter()
        try:
            served = await asyncio.get_running_loop().run_in_executor(self.executor, self._load, entry.spec)
        except Exception as error:
            entry.state, entry.failed_at = "failed", time.monotonic()
            entry.error = error.message if isinstance(error, ModelLoadError) else f"{type(error).__name__}: {error}"
            self._observer.model_load_failed(entry.spec.name)
            raise ModelLoadError(entry.error) from error
        finally:
            entry.loading = None
        entry.served, entry.state, entry.error = served, "resident", None
        entry.loads += 1
        self._observer.model_loaded(entry.spec.name, time.perf_counter() - started, "disk")
        return served

    def unload(self, name: str) -> bool:
        entry = self.entries[name]
        if entry.served is None:
            return False
        entry.served, entry.state = None, "disk"
        return True
