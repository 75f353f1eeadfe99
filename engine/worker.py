"""The device worker: the one loop that decides what the device does next.

Each turn it starts a swap if a cold model is due (the load runs on the loader thread while
the device keeps computing), takes the next batch of a resident model from the scheduler,
leases that model, runs the forward pass on the device thread, and delivers each item's
output to its request. Out of device memory, it evicts idle models, splits the batch and
retries, failing only the inputs that cannot fit even alone."""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import Executor
from dataclasses import dataclass

import torch

from .api import EngineObserver
from .errors import EngineError, ModelLoadError, NotReady
from .pool import ModelPool
from .scheduler import Batch, Scheduler
from .served import ServedModel

log = logging.getLogger("shoal.engine")


@dataclass(frozen=True)
class Failed:
    """In a batch's outputs: this item could not be computed (its request fails alone)."""

    error: EngineError


class DeviceWorker:
    def __init__(self, scheduler: Scheduler, pool: ModelPool, device: torch.device, device_thread: Executor,
                 observer: EngineObserver, swap_age_seconds: float):
        self.scheduler = scheduler
        self.pool = pool
        self.device = device
        self.device_thread = device_thread
        self.observer = observer
        self.swap_age_seconds = swap_age_seconds
        self._work = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._swaps: set[asyncio.Task] = set()

    # ---- lifecycle -------------------------------------------------------------------
    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="shoal-device-worker")

    async def stop(self) -> None:
        for task in self._swaps:
            task.cancel()
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def submitted(self, model: str) -> None:
        """New work for `model` is queued. A cold model's swap starts now and again when its
        swap age comes, not only between batches, so it loads while the device computes."""
        self._work.set()
        if model not in self.pool.resident():
            self.start_swaps()
            asyncio.get_running_loop().call_later(self.swap_age_seconds, self.start_swaps)

    # ---- the loop --------------------------------------------------------------------
    async def _run(self) -> None:
        while True:
            self.start_swaps()
            resident = self.pool.resident()
            batch = self.scheduler.next_batch(lambda model: model in resident)
            if batch is None:
                await self._idle()
                continue
            served = await self.pool.acquire(batch.model)
            try:
                started = time.perf_counter()
                outputs = await self._forward_with_recovery(served, batch)
                seconds = time.perf_counter() - started
            except asyncio.CancelledError:
                _fail(batch, NotReady("the server stopped before this request was processed"))
                raise
            except EngineError as error:
                _fail(batch, error)
                continue
            except Exception as error:  # a bug or device fault must not kill the worker
                log.exception("batch failed", extra={"model": batch.model})
                _fail(batch, EngineError(f"inference failed: {type(error).__name__}: {error}"))
                continue
            finally:
                self.pool.release(batch.model)
            self.scheduler.record_throughput(batch.tokens, seconds)
            self.observer.batch_done(batch.model, len(batch.items), batch.tokens, seconds)
            _deliver(batch, outputs, served.spec.fingerprint)

    async def _idle(self) -> None:
        """Sleep until work is submitted or the pool changes (a load that ended may let
        queued work run)."""
        self._work.clear()
        woken = asyncio.ensure_future(self._work.wait())
        changed = asyncio.ensure_future(self.pool.changed())
        try:
            await asyncio.wait({woken, changed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            woken.cancel()
            changed.cancel()

    # ---- swaps -----------------------------------------------------------------------
    def start_swaps(self) -> None:
        """Start loading the most urgent cold model that can be brought in now. A model that
        failed recently or can never fit beside the pinned models has its requests failed at
        once; one that must wait for a running batch to end is skipped, never blocking the
        models behind it."""
        if not self.running or self.pool.loading:
            return  # one loader thread: one load at a time; the next starts when it ends
        waiting = self.scheduler.waiting_models()
        for model in self.scheduler.swap_candidates(self.pool.resident(), self.swap_age_seconds):
            try:
                self.pool.check_loadable(model)
            except EngineError as error:
                self.scheduler.fail_model(model, error)
                continue
            load = self.pool.begin_load(model, queued=waiting)
            if load is not None:
                task = asyncio.create_task(self._swap_in(model, load))
                self._swaps = {task for task in self._swaps if not task.done()} | {task}
                return

    async def _swap_in(self, model: str, load: asyncio.Future) -> None:
        try:
            await load
            now = time.monotonic()
            for job in self.scheduler.jobs_of(model):
                self.observer.load_waited(model, now - job.enqueued_at)
        except ModelLoadError as error:
            self.scheduler.fail_model(model, error)
        finally:
            self._work.set()

    # ---- forward passes --------------------------------------------------------------
    async def _forward_with_recovery(self, served: ServedModel, batch: Batch) -> list:
        """Out of device memory: evict idle models, split the batch and retry each half; an
        input that does not fit even alone fails its own request, and only that one."""
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self.device_thread, served.run, batch)
        except torch.OutOfMemoryError:
            self.pool.evict_idle("out_of_memory", keep=batch.model)
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
            if len(batch.items) == 1:
                return [Failed(EngineError("out of device memory even for this input alone"))]
            log.warning("out of memory: splitting the batch", extra={"model": batch.model, "items": len(batch.items)})
            middle = len(batch.items) // 2
            outputs = []
            for half in (batch.items[:middle], batch.items[middle:]):
                outputs.extend(await self._forward_with_recovery(served, Batch(batch.model, batch.work, half)))
            return outputs


def _deliver(batch: Batch, outputs: list, weights_version: tuple) -> None:
    """Each item's output to its job; a job whose last item arrives is finished and answered.
    A job whose items were computed by two versions of its model's weights (the folder
    replaced and the model reloaded between two of its batches) fails with 503 rather than
    mix their outputs."""
    for item, output in zip(batch.items, outputs):
        job = item.job
        if job.future.done():  # answered already: its deadline passed or its caller left
            continue
        if isinstance(output, Failed):
            job.future.set_exception(output.error)
            continue
        if job.weights_version is None:
            job.weights_version = weights_version
        elif job.weights_version != weights_version:
            job.future.set_exception(NotReady(
                f"model {batch.model!r} was reloaded with new weights while this request was computed; send it again"))
            continue
        job.outputs[item.index] = output
        job.remaining -= 1
        if job.remaining == 0:
            try:
                job.future.set_result(job.finish(job.outputs))
            except Exception as error:  # finishing is ours: report it to the caller, keep serving
                job.future.set_exception(EngineError(f"post-processing failed: {error}"))


def _fail(batch: Batch, error: Exception) -> None:
    for item in batch.items:
        if not item.job.future.done():
            item.job.future.set_exception(error)
