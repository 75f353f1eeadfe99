"""The model pool: which models hold device memory, under a byte budget.

- Every model has a footprint known before loading: its weights in the serving dtype (from
  safetensors headers) plus a working reserve.
- Loading a model makes room by evicting least-recently-used models that are neither
  leased (a batch is running on them) nor pinned; models with queued work go last.
- Evicted models' weights stay in a host tier (pinned memory on CUDA) while it has room,
  so bringing them back is a copy, not a disk read and rebuild.
- Loads are single-flight; a failed load marks the model `failed` with its reason and is
  retried after a cooldown; nothing here can take the server down.
- The pool is the one owner of every model's spec and state; others ask it (and may wait
  for `changed()`), it calls nobody back.

All bookkeeping runs on the event loop; weight copies and disk reads run on the loader
thread. On a CPU-only server "device" and "host" are the same RAM: the host tier then
only changes which budget a parked model counts against."""

from __future__ import annotations

import asyncio
import ctypes
import logging
import time
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, Callable, Collection

from .errors import Conflict, LoadTimeout, ModelLoadError, ModelNotFound, NoRoom, about_model, public_reason
from .served import ServedModel
from .sizes import format_size
from .spec import ModelSpec, folder_fingerprint

log = logging.getLogger("shoal.engine")

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
    # loaded and not yet leased: a swap for another model must not evict it while it has
    # queued work, or two cold models with waiting requests evict each other for ever
    fresh: bool = False

    @property
    def pinned(self) -> bool:
        return self.spec.pin


class ModelPool:
    def __init__(self, specs: list[ModelSpec], load: Callable[[ModelSpec], ServedModel], element_size: int,
                 budget: int, host_budget: int, observer: Any):
        names = [spec.name for spec in specs]
        if len(set(names)) != len(names):
            raise ValueError(f"model names must be unique: {names}")
        self.element_size = element_size
        self.entries = {spec.name: PoolEntry(spec, footprint(spec, element_size)) for spec in specs}
        # a model may also be named by its source id (e.g. a hub id) in request bodies
        self.aliases = {spec.source: spec.name for spec in specs if spec.source and spec.source not in self.entries}
        self.budget = budget
        self.host_budget = host_budget
        self.executor: Executor | None = None  # the loader thread, set by Engine.start()
        self._load = load  # (spec) -> ServedModel, on the loader thread
        self.observer = observer
        self._waiters: list[asyncio.Future] = []  # callers of changed()
        for entry in self.entries.values():
            if entry.spec.problem:  # unreadable at start-up: failed now, retried after the cooldown
                entry.state, entry.failed_at = "failed", time.monotonic()
                entry.error = public_reason(entry.spec.problem, entry.spec.path)
            elif entry.bytes > budget:
                entry.state, entry.permanent_failure = "failed", True
                entry.error = (f"model {entry.spec.name!r} needs {format_size(entry.bytes)} but the memory budget "
                               f"is {format_size(budget)}")

    # ---- specs -----------------------------------------------------------------------
    def resolve(self, model: str) -> ModelSpec:
        """The spec of a served name or source id."""
        name = model if model in self.entries else self.aliases.get(model)
        if name is None:
            raise ModelNotFound(f"model {model!r} is not served here; known models: {sorted(self.entries)}")
        return self.entries[name].spec

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

    async def changed(self) -> None:
        """Wait for the next change: a lease released, a load finished or failed, an unload."""
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        await waiter

    def _notify(self) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    # ---- leases --------------------------------------------------------------------
    async def acquire(self, name: str) -> ServedModel:
        """The resident model, loading it first if needed; leased until `release`. A batch
        finding its model resident is a lookup `hit`; a load started for one is a `host`
        or `miss` lookup (counted in begin_load)."""
        if self.entries[name].state == "resident":
            self.observer.pool_lookup("hit")
        served = await self.ensure(name)
        entry = self.entries[name]
        entry.leases += 1
        entry.fresh = False
        entry.last_used = time.time()
        return served

    def release(self, name: str) -> None:
        entry = self.entries[name]
        entry.leases -= 1
        entry.last_used = time.time()
        self._notify()

    async def ensure(self, name: str, timeout: float | None = None, retry_now: bool = False,
                     queued: Collection[str] = ()) -> ServedModel:
        """Make a model resident (single-flight) without leasing it, waiting at most
        `timeout` seconds for room and for the load (None: no limit, for callers whose
        own deadline bounds them). `retry_now` (an operator's explicit load) skips the
        failure cooldown; `queued` names models with waiting work, evicted last. A load that
        times out here goes on in the background."""
        entry = self.entries[name]
        deadline = None if timeout is None else time.monotonic() + timeout
        while entry.state != "resident":
            if entry.loading is None:
                self.check_loadable(name, retry_now)
                if self.begin_load(name, queued) is None:  # busy models hold the room: wait for a lease to end
                    await self._wait(self.changed(), deadline, name, "room")
                    continue
            await self._wait(asyncio.shield(entry.loading), deadline, name, "its load")
        return entry.served

    async def _wait(self, awaitable, deadline: float | None, name: str, what: str):
        if deadline is None:
            return await awaitable
        try:
            return await asyncio.wait_for(awaitable, max(0.0, deadline - time.monotonic()))
        except asyncio.TimeoutError:
            raise LoadTimeout(f"model {name!r}: timed out waiting for {what}; a load in progress goes on") from None

    def check_loadable(self, name: str, retry_now: bool = False) -> None:
        """Raise at once when a load of `name` could not succeed now: it failed recently
        (ModelLoadError) or it cannot fit beside the pinned models (NoRoom)."""
        entry = self.entries[name]
        if entry.state == "failed" and not self.retry_due(name) and not (retry_now and not entry.permanent_failure):
            raise ModelLoadError(entry.error or "load failed")
        pinned = [e for e in self.entries.values() if e.pinned and e is not entry and e.state != "failed"]
        room = self.budget - sum(e.bytes for e in pinned)
        if entry.bytes > room:
            raise NoRoom(f"model {name!r} needs {format_size(entry.bytes)} but only {format_size(max(room, 0))} of "
                         f"the {format_size(self.budget)} memory budget is left beside the pinned models "
                         f"{sorted(e.spec.name for e in pinned)}; unpin one or raise --memory-budget")

    def can_make_room(self, name: str) -> bool:
        """Whether `name` could be brought in now without waiting for a lease to end."""
        return self._plan_eviction(self.entries[name].bytes) is not None

    @property
    def loading(self) -> bool:
        return any(e.loading is not None for e in self.entries.values())

    # ---- loading and eviction --------------------------------------------------------
    def begin_load(self, name: str, queued: Collection[str] = ()) -> asyncio.Future | None:
        """Start bringing `name` in, if room can be made now: the evictions happen here, at
        once, so nothing can take the room before the load starts. Returns the load's
        future (an existing one if a load is in flight), or None if busy models hold the
        room. `queued` names models with waiting work: they are evicted last. Call
        `check_loadable` first."""
        entry = self.entries[name]
        if entry.loading is not None:
            return entry.loading
        victims = self._plan_eviction(entry.bytes, queued)
        if victims is None:
            return None
        self.observer.pool_lookup("host" if entry.state == "host" else "miss")
        from_host, previous_state = entry.state == "host", entry.state
        entry.state = "loading"
        parked = [served for victim in victims if (served := self._evict(victim, "lru")) is not None]
        entry.loading = asyncio.ensure_future(self._bring_in(entry, from_host, previous_state, parked))
        return entry.loading

    async def _bring_in(self, entry: PoolEntry, from_host: bool, previous_state: str,
                        parked: list[ServedModel]) -> ServedModel:
        name = entry.spec.name
        started = time.perf_counter()
        try:
            loop = asyncio.get_running_loop()
            served, source = await loop.run_in_executor(self.executor, self._load_or_restore, entry, from_host,
                                                        parked)
        except BaseException as error:
            entry.loading = None
            if isinstance(error, asyncio.CancelledError):  # the engine is stopping
                entry.state = previous_state if previous_state in ("host", "disk") else "disk"
                self._notify()
                raise
            reason = error.message if isinstance(error, ModelLoadError) else f"{type(error).__name__}: {error}"
            log.error("model load failed", extra={"model": name, "reason": reason})
            entry.state, entry.failed_at, entry.served = "failed", time.monotonic(), None
            entry.error = public_reason(about_model(name, reason), entry.spec.path)  # names its model once
            self.observer.model_load_failed(name)
            self._notify()
            raise ModelLoadError(entry.error) from error
        entry.served, entry.state, entry.error, entry.fresh = served, "resident", None, True
        entry.spec = served.spec  # a folder fixed or replaced since was read again by the load
        # count what actually loaded (a folder unreadable at start-up had no size estimate)
        entry.bytes = max(footprint(served.spec, self.element_size), footprint_of_loaded(served))
        entry.loads += 1
        entry.loading = None
        entry.last_used = time.time()
        self.observer.model_loaded(name, time.perf_counter() - started, source)
        self._notify()
        return served

    def _load_or_restore(self, entry: PoolEntry, from_host: bool,
                         parked: list[ServedModel]) -> tuple[ServedModel, str]:
        """Loader thread: park the evicted models' weights on the host, then bring the model
        back from the host tier, or from disk when its folder changed since (a replaced model
        must not come back as the old one)."""
        for served in parked:
            served.to_host()
        if from_host and entry.served is not None and folder_fingerprint(entry.spec.path) == entry.spec.fingerprint:
            entry.served.to_device()
            return entry.served, "host"
        served = self._load(entry.spec)
        release_freed_memory()  # the weights of models dropped since: back to the OS, not kept in the heap
        return served, "disk"

    def _victims(self, queued: Collection[str] = ()) -> list[PoolEntry]:
        """Evictable resident models, first to go first: idle ones before ones with queued
        work, least recently used first. A model loaded for queued work is not evictable
        until it has run a batch (each swap buys at least one batch)."""
        candidates = [e for e in self.entries.values()
                      if e.state == "resident" and e.leases == 0 and not e.pinned
                      and not (e.fresh and e.spec.name in queued)]
        return sorted(candidates, key=lambda e: (e.spec.name in queued, e.last_used or 0.0))

    def _plan_eviction(self, needed: int, queued: Collection[str] = ()) -> list[PoolEntry] | None:
        """The victims that make `needed` bytes fit, or None if they cannot (yet)."""
        free = self.budget - self.device_bytes
        chosen = []
        for victim in self._victims(queued):
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

    def unload(self, name: str) -> None:
        """Operator unload: move to the host tier (or disk). A model that is not resident is
        left as it is; a pinned, busy or loading one is a Conflict naming why."""
        entry = self.entries[name]
        if entry.pinned:
            raise Conflict(f"model {name!r} is pinned; it is never unloaded")
        if entry.loading is not None:
            raise Conflict(f"model {name!r} is loading; unload it once it is resident")
        if entry.state != "resident":
            return
        if entry.leases:
            raise Conflict(f"model {name!r} is running a batch; try again in a moment")
        served = self._evict(entry, "operator")
        if served is not None:
            served.to_host()
        self._notify()

    def mark_failed(self, name: str, reason: str) -> None:
        """A model found unusable outside a load (its tokenizer is gone): `failed` with the
        reason, like a failed load, so /v1/models and /readyz tell the truth. A resident or
        loading model keeps its state: its load decides."""
        entry = self.entries[name]
        if entry.state in ("resident", "loading"):
            return
        entry.state, entry.served, entry.failed_at, entry.error = "failed", None, time.monotonic(), reason
        self._notify()

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


def release_freed_memory() -> None:
    """Give the C heap's free pages back to the OS (glibc's malloc_trim). Weights of evicted
    and reloaded models are freed in pieces the allocator otherwise keeps: a server that swaps
    models from disk for hours would grow by hundreds of MiB (benchmarks/soak.py measured it)."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


def _glibc():
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.malloc_trim  # noqa: B018 - only glibc has it
        return libc
    except (OSError, AttributeError):
        return None


_LIBC = _glibc()
