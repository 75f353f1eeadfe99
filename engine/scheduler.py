"""Per-model queues and batch formation by token budget.

Invariants (a hypothesis test drives them on real tiny models):
- `queued_tokens` is the sum of the tokens of live queued work, and nothing else: a job
  leaves its queue the moment its future is done (result, failure, deadline or the caller's
  cancellation), so dead work never counts against admission or the queue gauges.
- Every job with a deadline has a timer on the event loop that fails it when the deadline
  passes, whether or not the device worker is awake.

All methods run on the event loop thread; nothing here touches the device."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

from .errors import DeadlineExceeded, Overloaded
from .tasks import Work
from .tokenize import Tokenized


@dataclass(eq=False)
class Job:
    """One API call: its items, where their outputs go, and the future its caller awaits."""

    model: str
    work: Work  # which head of the served model runs it
    items: list[Tokenized]
    future: asyncio.Future
    finish: Callable[[list[Any]], Any]  # outputs in input order -> the caller's result
    deadline: float | None = None  # time.monotonic() value
    enqueued_at: float = field(default_factory=time.monotonic)
    outputs: list[Any] = field(default_factory=list)
    remaining: int = 0
    timer: asyncio.TimerHandle | None = None  # fails the job at its deadline
    # The version of the weights (the model folder's fingerprint at load) that computed its first
    # items: all its outputs must come from it (a folder replaced and reloaded between two of its
    # batches would mix two models' answers; a reload of the same files is the same version).
    weights_version: tuple | None = None

    def __post_init__(self):
        self.outputs = [None] * len(self.items)
        self.remaining = len(self.items)

    @property
    def tokens(self) -> int:
        return sum(len(item.ids) for item in self.items)


@dataclass(eq=False, slots=True)
class WorkItem:
    job: Job
    index: int  # position in the job's inputs

    @property
    def tokenized(self) -> Tokenized:
        return self.job.items[self.index]

    @property
    def length(self) -> int:
        return len(self.job.items[self.index].ids)


@dataclass
class Batch:
    """Items of one model and one kind of work, up to the token budget: what the worker hands
    to the model's forward pass (which packs them into tensors, engine.batch)."""

    model: str
    work: Work
    items: list[WorkItem]

    @property
    def tokens(self) -> int:
        return sum(item.length for item in self.items)


class ModelQueue:
    """One (model, work) queue: jobs in arrival order, each with its items not yet batched."""

    def __init__(self):
        self.jobs: dict[Job, deque[WorkItem]] = {}  # insertion order = arrival order
        self.items = 0
        self.tokens = 0

    def oldest(self) -> float:
        return next(iter(self.jobs)).enqueued_at


class Scheduler:
    def __init__(self, max_batch_tokens: int, max_queue_tokens: int):
        self.max_batch_tokens = max_batch_tokens
        self.max_queue_tokens = max_queue_tokens
        self.queues: dict[tuple[str, Work], ModelQueue] = {}
        self.queued_tokens = 0
        self.tokens_per_second = 0.0  # moving average, for Retry-After hints

    def submit(self, job: Job) -> None:
        """Queue a job (or refuse it with 429 when the queue is full). From here on the job
        leaves the queue by itself when its future is done, and its deadline is armed."""
        tokens = job.tokens
        if self.queued_tokens + tokens > self.max_queue_tokens and self.queued_tokens > 0:
            backlog = self.queued_tokens / max(self.tokens_per_second, 1.0)
            raise Overloaded(f"queue full ({self.queued_tokens} tokens waiting); retry later",
                             retry_after=max(1.0, round(backlog)))
        queue = self.queues.setdefault((job.model, job.work), ModelQueue())
        # Within one job, shortest first: consecutive batches then hold similar lengths,
        # which keeps equal-length runs long for the CPU attention path.
        order = sorted(range(len(job.items)), key=lambda i: len(job.items[i].ids))
        queue.jobs[job] = deque(WorkItem(job, index) for index in order)
        queue.items += len(job.items)
        queue.tokens += tokens
        self.queued_tokens += tokens
        job.future.add_done_callback(lambda _: self._withdraw(job))
        if job.deadline is not None:
            delay = max(0.0, job.deadline - time.monotonic())
            expired = DeadlineExceeded("deadline passed before the request was processed")
            job.timer = asyncio.get_running_loop().call_later(delay, self.fail, job, expired)

    def _withdraw(self, job: Job) -> None:
        """The job is answered (or abandoned): drop what is left of it from its queue."""
        if job.timer is not None:
            job.timer.cancel()
        queue = self.queues.get((job.model, job.work))
        left = queue.jobs.pop(job, None) if queue else None
        if left:
            tokens = sum(item.length for item in left)
            queue.items -= len(left)
            queue.tokens -= tokens
            self.queued_tokens -= tokens

    def next_batch(self, eligible: Callable[[str], bool] | None = None) -> Batch | None:
        """From the queue with the oldest waiting work among `eligible` models (by default
        all), items up to the token budget, length-sorted."""
        waiting = [(q.oldest(), key) for key, q in self.queues.items()
                   if q.jobs and (eligible is None or eligible(key[0]))]
        if not waiting:
            return None
        _, (model, work) = min(waiting, key=lambda entry: entry[0])
        queue = self.queues[(model, work)]
        items, tokens = [], 0
        while queue.jobs:
            job, left = next(iter(queue.jobs.items()))
            if job.future.done():  # answered a moment ago; its done callback has not run yet
                self._withdraw(job)
                continue
            while left and (not items or tokens + left[0].length <= self.max_batch_tokens):
                item = left.popleft()
                items.append(item)
                tokens += item.length
            if left:
                break  # the budget is full
            del queue.jobs[job]  # every item of this job is in a batch now
        if not items:  # every job in that queue had just been answered: look again
            return self.next_batch(eligible)
        queue.items -= len(items)
        queue.tokens -= tokens
        self.queued_tokens -= tokens
        items.sort(key=lambda item: item.length)
        return Batch(model, work, items)

    def waiting_models(self) -> dict[str, tuple[float, int]]:
        """model -> (enqueue time of its oldest waiting job, queued tokens)."""
        result: dict[str, tuple[float, int]] = {}
        for (model, _), queue in self.queues.items():
            if queue.jobs:
                oldest, tokens = result.get(model, (float("inf"), 0))
                result[model] = (min(oldest, queue.oldest()), tokens + queue.tokens)
        return result

    def swap_candidates(self, resident: set[str], swap_age: float) -> list[str]:
        """Cold models whose waiting work should be swapped in now, most urgent first.

        While resident models have work, a cold model waits until its oldest request is
        `swap_age` old or it has a full batch of tokens, so swaps are amortised over many
        requests instead of thrashing; when nothing resident has work, it goes at once."""
        now = time.monotonic()
        waiting = self.waiting_models()
        resident_busy = any(model in resident for model in waiting)
        due = [(oldest, model) for model, (oldest, tokens) in waiting.items()
               if model not in resident
               and (not resident_busy or now - oldest >= swap_age or tokens >= self.max_batch_tokens)]
        return [model for _, model in sorted(due)]

    def jobs_of(self, model: str) -> list[Job]:
        """The queued jobs of a model, oldest first."""
        return [job for (name, _), queue in self.queues.items() if name == model for job in queue.jobs]

    def fail_model(self, model: str, error: Exception) -> None:
        """Answer every queued job of a model with `error`; each leaves its queue as it fails."""
        for job in self.jobs_of(model):
            self.fail(job, error)

    def fail(self, job: Job, error: Exception) -> None:
        """Answer a job with `error` and drop it from its queue at once (not when the loop
        gets round to the done callback)."""
        if not job.future.done():
            job.future.set_exception(error)
        self._withdraw(job)

    def record_throughput(self, tokens: int, seconds: float) -> None:
        if seconds > 0:
            rate = tokens / seconds
            self.tokens_per_second = rate if not self.tokens_per_second else 0.8 * self.tokens_per_second + 0.2 * rate

    def depth(self) -> dict[str, tuple[int, int]]:
        """model -> (queued items, queued tokens)."""
        result: dict[str, tuple[int, int]] = {}
        for (model, _), queue in self.queues.items():
            items, tokens = result.get(model, (0, 0))
            result[model] = (items + queue.items, tokens + queue.tokens)
        return result

    def empty(self) -> bool:
        return self.queued_tokens == 0

