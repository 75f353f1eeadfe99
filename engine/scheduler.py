"""Per-model queues and batch formation by token budget.

All methods run on the event loop thread; nothing here touches the device."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

from .errors import DeadlineExceeded, Overloaded
from .tokenize import Tokenized


@dataclass(eq=False)
class Job:
    """One API call: its items, where their outputs go, and the future its caller awaits."""

    model: str
    kind: str  # which head of the served model runs it ("embed", ...)
    items: list[Tokenized]
    future: asyncio.Future
    finish: Callable[[list[Any]], Any]  # outputs in input order -> the caller's result
    deadline: float | None = None  # time.monotonic() value
    enqueued_at: float = field(default_factory=time.monotonic)
    outputs: list[Any] = field(default_factory=list)
    remaining: int = 0

    def __post_init__(self):
        self.outputs = [None] * len(self.items)
        self.remaining = len(self.items)

    @property
    def tokens(self) -> int:
        return sum(len(item.ids) for item in self.items)

    @property
    def abandoned(self) -> bool:
        """The caller went away (disconnect cancels its await) or the job already failed."""
        return self.future.done()


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
    model: str
    kind: str
    items: list[WorkItem]

    @property
    def tokens(self) -> int:
        return sum(item.length for item in self.items)


class ModelQueue:
    def __init__(self):
        self.items: deque[WorkItem] = deque()
        self.tokens = 0

    def __len__(self) -> int:
        return len(self.items)

    def oldest(self) -> float:
        return self.items[0].job.enqueued_at


class Scheduler:
    def __init__(self, max_batch_tokens: int, max_queue_tokens: int):
        self.max_batch_tokens = max_batch_tokens
        self.max_queue_tokens = max_queue_tokens
        self.queues: dict[tuple[str, str], ModelQueue] = {}
        self.queued_tokens = 0
        self.tokens_per_second = 0.0  # moving average, for Retry-After hints

    def submit(self, job: Job) -> None:
        tokens = job.tokens
        if self.queued_tokens + tokens > self.max_queue_tokens and self.queued_tokens > 0:
            backlog = self.queued_tokens / max(self.tokens_per_second, 1.0)
            raise Overloaded(f"queue full ({self.queued_tokens} tokens waiting); retry later",
                             retry_after=max(1.0, round(backlog)))
        queue = self.queues.setdefault((job.model, job.kind), ModelQueue())
        # Within one job, shortest first: consecutive batches then hold similar lengths,
        # which keeps equal-length runs long for the CPU attention path.
        for index in sorted(range(len(job.items)), key=lambda i: len(job.items[i].ids)):
            queue.items.append(WorkItem(job, index))
        queue.tokens += tokens
        self.queued_tokens += tokens

    def next_batch(self, eligible: Callable[[str], bool] | None = None) -> Batch | None:
        """From the queue with the oldest waiting work among `eligible` models (by default
        all), items up to the token budget, length-sorted."""
        self._drop_dead()
        waiting = [(q.oldest(), key) for key, q in self.queues.items()
                   if q.items and (eligible is None or eligible(key[0]))]
        if not waiting:
            return None
        _, (model, kind) = min(waiting)
        queue = self.queues[(model, kind)]
        items, tokens = [], 0
        while queue.items:
            item = queue.items[0]
            if item.job.abandoned:
                self._pop(queue)
                continue
            if items and tokens + item.length > self.max_batch_tokens:
                break
            items.append(self._pop(queue))
            tokens += item.length
        if not items:
            return None
        items.sort(key=lambda item: item.length)
        return Batch(model, kind, items)

    def _pop(self, queue: ModelQueue) -> WorkItem:
        item = queue.items.popleft()
        queue.tokens -= item.length
        self.queued_tokens -= item.length
        return item

    def _drop_dead(self) -> None:
        """Fail jobs whose deadline has passed before their work reaches the device."""
        now = time.monotonic()
        for queue in self.queues.values():
            for item in queue.items:
                job = item.job
                if job.deadline is not None and job.deadline < now and not job.future.done():
                    job.future.set_exception(DeadlineExceeded("deadline passed before the request was processed"))

    def waiting_models(self) -> dict[str, tuple[float, int]]:
        """model -> (enqueue time of its oldest waiting item, queued tokens)."""
        result: dict[str, tuple[float, int]] = {}
        for (model, _), queue in self.queues.items():
            if queue.items:
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
        jobs: dict[int, Job] = {}
        for (name, _), queue in self.queues.items():
            if name == model:
                for item in queue.items:
                    jobs[id(item.job)] = item.job
        return list(jobs.values())

    def fail_model(self, model: str, error: Exception) -> None:
        """Answer every queued job of a model with `error` (its load failed)."""
        for job in self.jobs_of(model):
            if not job.future.done():
                job.future.set_exception(error)
        for (name, _), queue in self.queues.items():
            if name == model:
                while queue.items:
                    self._pop(queue)

    def record_throughput(self, tokens: int, seconds: float) -> None:
        if seconds > 0:
            rate = tokens / seconds
            self.tokens_per_second = rate if not self.tokens_per_second else 0.8 * self.tokens_per_second + 0.2 * rate

    def depth(self) -> dict[str, tuple[int, int]]:
        """model -> (queued items, queued tokens)."""
        result: dict[str, tuple[int, int]] = {}
        for (model, _), queue in self.queues.items():
            items, tokens = result.get(model, (0, 0))
            result[model] = (items + len(queue), tokens + queue.tokens)
        return result

    def empty(self) -> bool:
        return self.queued_tokens == 0
