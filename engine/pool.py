"""The model pool: which models hold device memory, under a byte budget.

- Every model has a footprint known before loading: its weights in the serving dtype (from
  safetensors headers) plus a working reserve.
- Loading a model makes room by evicting least-recently-used models that are neither
  leased (a batch is running on them) nor pinned; models with queued work go last.
- Evicted models' weights stay in a host tier (pinned memory on CUDA) while it has room,
  so bringing them back is a copy, not a disk read and rebuild.
- Loads are single-flight; a failed load marks the model `failed` with its reason and is
  retried after a cooldown; nothing here can take the server down.

All bookkeeping runs on the event loop; weight copies and disk reads run on the loader
thread. On a CPU-only server "device" and "host" are the same RAM: the host tier then
only changes which budget a parked model counts against."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, Callable

from .errors import ModelLoadError
from .served import ServedModel
from .spec import ModelSpec
from .sizes import format_size

RETRY_COOLDOWN_SECONDS = 10.0
RESERVE_FRACTION = 0.10  # working memory per model, beyond its weights ...
RESERVE_MINIMUM = 16 * 2**20  # ... and at least this


def footprint(spec: ModelSpec, element_size: int) -> int:
    """Device bytes a model needs: weights in the serving dtype plus a working reserve."""
    dense = sum(layer.in_features * layer.out_features + layer.out_features * layer.bias
                for layer in spec.dense_layers)
    weights = (spec.parameter_count + dense) * element_size
    return weights + max(int(weights * RESERVE_FRACTION), RESERVE_MINIMUM)


def footprint_of_loaded(served: ServedModel) -> int:
    return served.resident_bytes + max(int(served.resident_bytes * RESERVE_FRACTION), RESERVE_MINIMUM)


@dataclass(eq=False)
class PoolEntry:
    spec: ModelSpec
    bytes: int  # footprint on the device
    state: str = "disk"  # disk | host | loading | resident | failed
    served: ServedModel | None = None  # set while resident or parked in the host tier
    error: str | None = None
    failed_at: float = 0.0
    permanent_failure: bool = False  # e.g. larger than the whole budget: never retried
    loads: int = 0
    evictions: int = 0
    last_used: float | None = None  # wall-clock seconds
    leases: int = 0
    loading: asyncio.Future | None = None

    @property
    def pinned(self) -> bool:
        return self.spec.pin


class ModelPool:
    def __init__(self, specs: list[ModelSpec], load: Callable[[ModelSpec], ServedModel], element_size: int,
                 budget: int, host_budget: int, observer: Any, has_work: Callable[[str], bool] = lambda name: False):
        self.entries = {spec.name: PoolEntry(spec, footprint(spec, element_size)) for spec in specs}
        self.budget = budget
        self.host_budget = host_budget
        self.executor: Executor | None = None  # the loader thread, set by Engine.start()
        self._load = load
        self.observer = observer
        self._has_work = has_work
        self._changed = asyncio.Event()  # set when a lease is released or a load ends
        self.on_change: Callable[[], None] = lambda: None  # the engine wakes its worker here
        for entry in self.entries.values():
            if entry.spec.problem:  # unreadable at start-up: failed now, retried after the cooldown
                entry.state, entry.error, entry.failed_at = "failed", entry.spec.problem, time.monotonic()
            elif entry.bytes > budget:
                entry.state, entry.permanent_failure = "failed", True
                entry.error = (f"model {entry.spec.name!r} needs {format_size(entry.bytes)} but the memory budget "
                               f"is {format_size(budget)}")

    # ---- accounting ----------------------------------------------------------------
    @property
    def device_bytes(self) -> int:
        return sum(e.bytes for e in self.entries.values() if e.state in ("resident", "loading"))

    @property
    def host_bytes(self) -> int:
        return sum(e.bytes for e in self.entries.values() if e.state == "host")

    def resident(self) -> set[str]:
        return {name for name, e in self.entries.items() if e.state == "resident"}

    def retry_due(self, name: str) -> bool:
        entry = self.entries[name]
        return not entry.permanent_failure and time.monotonic() - entry.failed_at >= RETRY_COOLDOWN_SECONDS

    def is_loading(self, name: str) -> bool:
        return self.entries[name].loading is not None

    def _notify(self) -> None:
        self._changed.set()
        self.on_change()

    # ---- leases --------------------------------------------------------------------
    async def acquire(self, name: str) -> ServedModel:
        """The resident model, loading it first if needed; leased until `release`."""
        served = await self.ensure(name)
        entry = self.entries[name]
        entry.leases += 1
        entry.last_used = time.time()
        return served

    def release(self, name: str) -> None:
        entry = self.entries[name]
        entry.leases -= 1
        entry.last_used = time.time()
        self._notify()

    async def ensure(self, name: str, wait_for_room: bool = True, retry_now: bool = False) -> ServedModel:
        """Make a model resident (single-flight) without leasing it. `retry_now` (an
        operator's explicit load) skips the failure cooldown."""
        entry = self.entries[name]
        if entry.state == "resident":
            self.observer.pool_lookup("hit")
            return entry.served
        if entry.loading is None:
            if entry.state == "failed" and not self.retry_due(name) and not (retry_now and not entry.permanent_failure):
                raise ModelLoadError(entry.error or "load failed")
            self.observer.pool_lookup("host" if entry.state == "host" else "miss")
            entry.loading = asyncio.ensure_future(self._bring_in(entry, wait_for_room))
        return await asyncio.shield(entry.loading)

    def can_make_room(self, name: str) -> bool:
        """Whether `name` could be brought in now without waiting for a lease to end."""
        entry = self.entries[name]
        free = self.budget - self.device_bytes + sum(e.bytes for e in self._victims())
        return entry.bytes <= free

    # ---- loading and eviction --------------------------------------------------------
    async def _bring_in(self, entry: PoolEntry, wait_for_room: bool) -> ServedModel:
        name = entry.spec.name
        previous_state = entry.state
        try:
            while (victims := self._plan_eviction(entry.bytes)) is None:
                if not wait_for_room:
                    raise ModelLoadError(f"no room for {name!r}: every resident model is busy or pinned")
                self._changed.clear()
                await self._changed.wait()  # a lease ended or a load finished
            from_host = entry.state == "host"
            entry.state = "loading"
            parked = [served for victim in victims if (served := self._evict(victim, "lru")) is not None]
            started = time.perf_counter()
            loop = asyncio.get_running_loop()
            served = await loop.run_in_executor(self.executor, self._load_or_restore, entry, from_host, parked)
        except Exception as error:
            entry.loading = None
            self._notify()
            if isinstance(error, asyncio.CancelledError):
                entry.state = previous_state if previous_state != "loading" else "disk"
                raise
            entry.state, entry.failed_at, entry.served = "failed", time.monotonic(), None
            entry.error = error.message if isinstance(error, ModelLoadError) else f"{type(error).__name__}: {error}"
            self.observer.model_load_failed(name)
            raise ModelLoadError(entry.error) from error
        entry.served, entry.state, entry.error = served, "resident", None
        # a folder unreadable at start-up had no size estimate: count what actually loaded
        entry.bytes = max(entry.bytes, footprint_of_loaded(served))
        entry.loads += 1
        entry.loading = None
        entry.last_used = time.time()
        self.observer.model_loaded(name, time.perf_counter() - started, "host" if from_host else "disk")
        self._notify()
        return served

    def _load_or_restore(self, entry: PoolEntry, from_host: bool, parked: list[ServedModel]) -> ServedModel:
        """Loader thread: park the evicted models' weights on the host, then load."""
        for served in parked:
            served.to_host()
        if from_host and entry.served is not None:
            entry.served.to_device()
            return entry.served
        return self._load(entry.spec)

    def _victims(self) -> list[PoolEntry]:
        """Evictable resident models, first to go first: idle ones before ones with queued
        work, least recently used first."""
        candidates = [e for e in self.entries.values()
                      if e.state == "resident" and e.leases == 0 and not e.pinned]
        return sorted(candidates, key=lambda e: (self._has_work(e.spec.name), e.last_used or 0.0))

    def _plan_eviction(self, needed: int) -> list[PoolEntry] | None:
        """The victims that make `needed` bytes fit, or None if they cannot (yet)."""
        free = self.budget - self.device_bytes
        chosen = []
        for victim in self._victims():
            if free >= needed:
                break
            chosen.append(victim)
            free += victim.bytes
        return chosen if free >= needed else None

    def _evict(self, entry: PoolEntry, reason: str) -> ServedModel | None:
        """Bookkeeping on the loop; returns the model whose weights go to the host tier."""
        entry.evictions += 1
        self.observer.model_evicted(entry.spec.name, reason)
        served = entry.served
        if entry.bytes <= self.host_budget:
            self._trim_host(self.host_budget - entry.bytes)
            entry.state = "host"
            return served
        entry.state, entry.served = "disk", None
        return None

    def _trim_host(self, limit: int) -> None:
        """Drop least-recently-used host copies until the host tier holds at most `limit`."""
        parked = sorted((e for e in self.entries.values() if e.state == "host"), key=lambda e: e.last_used or 0.0)
        for entry in parked:
            if self.host_bytes <= limit:
                break
            entry.state, entry.served = "disk", None

    def unload(self, name: str) -> bool:
        """Operator unload: move to the host tier (or disk) unless pinned, leased or loading."""
        entry = self.entries[name]
        if entry.state != "resident" or entry.leases or entry.pinned:
            return False
        served = self._evict(entry, "operator")
        if served is not None:
            served.to_host()
        self._notify()
        return True

    def evict_idle(self, reason: str, keep: str | None = None) -> int:
        """Evict every unleased, unpinned resident model but `keep` (out-of-memory recovery)."""
        count = 0
        for entry in self._victims():
            if entry.spec.name != keep:
                served = self._evict(entry, reason)
                if served is not None:
                    served.to_host()
                count += 1
        return count
