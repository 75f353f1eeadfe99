"""Dynamic batching: token budgets, coalescing across callers, overload, deadlines,
abandoned work. Outputs are checked against one-at-a-time encoding."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from engine import DeadlineExceeded, Engine, EngineConfig, EngineObserver, Overloaded
from engine.scheduler import Job, Scheduler
from engine.tasks import Head, Work
from engine.tokenize import Tokenized
from tests.texts import varied_texts


class Recorder(EngineObserver):
    def __init__(self):
        self.batches: list[tuple[int, int]] = []
        self.rejections: list[str] = []

    def batch_done(self, model, sequences, tokens, seconds):
        self.batches.append((sequences, tokens))

    def rejected(self, reason):
        self.rejections.append(reason)


def _job(lengths: list[int], loop) -> Job:
    items = [Tokenized(list(range(n)), [0] * n) for n in lengths]
    return Job("m", Work(Head.POOLED), items, loop.create_future(), lambda outputs: outputs)


async def test_batches_respect_the_token_budget_and_are_length_sorted():
    loop = asyncio.get_running_loop()
    scheduler = Scheduler(max_batch_tokens=100, max_queue_tokens=10_000)
    scheduler.submit(_job([50, 10, 30, 40, 5], loop))
    scheduler.submit(_job([60, 2], loop))
    batches = []
    while (batch := scheduler.next_batch()) is not None:
        batches.append([item.length for item in batch.items])
    assert all(sum(b) <= 100 for b in batches)
    assert all(b == sorted(b) for b in batches)
    assert sorted(n for b in batches for n in b) == sorted([50, 10, 30, 40, 5, 60, 2])
    # the first job is served before the second (FIFO across callers)
    assert batches[0] == [5, 10, 30, 40]
    assert scheduler.empty()


async def test_a_single_item_over_budget_still_runs_alone():
    loop = asyncio.get_running_loop()
    scheduler = Scheduler(max_batch_tokens=10, max_queue_tokens=1000)
    scheduler.submit(_job([30, 3], loop))
    assert [item.length for item in scheduler.next_batch().items] == [3]
    assert [item.length for item in scheduler.next_batch().items] == [30]


async def test_abandoned_jobs_are_dropped_before_batching():
    loop = asyncio.get_running_loop()
    scheduler = Scheduler(max_batch_tokens=1000, max_queue_tokens=10_000)
    gone, kept = _job([5, 6], loop), _job([7], loop)
    scheduler.submit(gone)
    scheduler.submit(kept)
    gone.future.cancel()  # the client disconnected
    batch = scheduler.next_batch()
    assert [item.job for item in batch.items] == [kept]
    assert scheduler.empty()


async def test_concurrent_callers_coalesce_and_match_one_at_a_time(minilm_spec):
    recorder = Recorder()
    engine = Engine([minilm_spec], EngineConfig(device="cpu", dtype="float32", max_batch_tokens=1024), recorder)
    await engine.start()
    try:
        texts = varied_texts(60, seed=11)
        alone = [(await engine.encode(minilm_spec.name, [t])).embeddings[0] for t in texts]
        solo_batches = len(recorder.batches)
        together = await asyncio.gather(*(engine.encode(minilm_spec.name, [t]) for t in texts))
    finally:
        await engine.stop()
    coalesced = recorder.batches[solo_batches:]
    assert len(coalesced) < len(texts)  # requests shared forward passes
    assert all(tokens <= 1024 for _, tokens in coalesced)
    for one, many in zip(alone, together):
        np.testing.assert_allclose(many.embeddings[0], one, atol=1e-5)


async def test_overload_is_refused_with_retry_after_and_nothing_is_lost(minilm_spec):
    recorder = Recorder()
    engine = Engine([minilm_spec], EngineConfig(device="cpu", dtype="float32", max_batch_tokens=256,
                                                max_queue_tokens=600), recorder)
    await engine.start()
    try:
        texts = ["word " * 100] * 40
        results = await asyncio.gather(*(engine.encode(minilm_spec.name, [t]) for t in texts), return_exceptions=True)
    finally:
        await engine.stop()
    refused = [r for r in results if isinstance(r, Overloaded)]
    served = [r for r in results if not isinstance(r, Exception)]
    assert refused and served
    assert len(refused) + len(served) == len(texts)  # every request got a result or an error
    assert all(r.retry_after >= 1 for r in refused)
    assert recorder.rejections.count("overloaded") == len(refused)


async def test_expired_deadlines_fail_with_504_before_the_device(minilm_spec):
    recorder = Recorder()
    engine = Engine([minilm_spec], EngineConfig(device="cpu", dtype="float32", max_batch_tokens=256), recorder)
    await engine.start()
    try:
        await engine.load(minilm_spec.name)
        blocker = asyncio.create_task(engine.encode(minilm_spec.name, ["word " * 250] * 8))
        while engine.scheduler.empty():  # the blocker's eight batches are queued ahead
            await asyncio.sleep(0.001)
        late = engine.encode(minilm_spec.name, ["too late"], deadline=time.monotonic() + 0.001)
        with pytest.raises(DeadlineExceeded):
            await late
        await blocker
    finally:
        await engine.stop()
    assert sum(sequences for sequences, _ in recorder.batches) == 8  # the expired input never ran


async def test_out_of_memory_splits_the_batch_and_fails_only_what_cannot_fit(minilm_spec, monkeypatch):
    """A real out-of-memory needs a GPU; here the forward pass raises torch's OOM error for
    batches over 200 tokens, as a small card would."""
    import torch

    from engine import EngineError

    engine = Engine([minilm_spec], EngineConfig(device="cpu", dtype="float32", max_batch_tokens=4096))
    await engine.start()
    try:
        name = minilm_spec.name
        texts = ["word " * 40 + str(i) for i in range(8)]  # ~43 tokens each, ~340 in one batch
        expected = (await engine.encode(name, texts)).embeddings
        served = engine.pool.entries[name].served
        real_embed, batch_sizes = served.embed, []

        def embed_on_a_small_card(items, pooling=None):
            batch_sizes.append(len(items))
            if sum(len(item.ids) for item in items) > 200:
                raise torch.OutOfMemoryError("simulated: CUDA out of memory")
            return real_embed(items, pooling)

        monkeypatch.setattr(served, "embed", embed_on_a_small_card)
        recovered = await engine.encode(name, texts)
        np.testing.assert_allclose(recovered.embeddings, expected, atol=1e-5)
        assert batch_sizes[0] == 8 and max(batch_sizes[1:]) <= 4  # split, then retried

        too_big, fine = await asyncio.gather(engine.encode(name, ["word " * 300]), engine.encode(name, ["small"]),
                                             return_exceptions=True)
        assert isinstance(too_big, EngineError) and "out of device memory" in too_big.message
        assert fine.embeddings.shape == (1, 384)  # other requests keep being served
    finally:
        await engine.stop()


async def test_requests_that_arrive_during_a_preload_are_served(minilm_spec):
    engine = Engine([minilm_spec], EngineConfig(device="cpu", dtype="float32"))
    await engine.start()
    try:
        preload = asyncio.create_task(engine.load(minilm_spec.name))
        await asyncio.sleep(0)  # the load is in flight when the request comes
        result = await asyncio.wait_for(engine.encode(minilm_spec.name, ["during the preload"]), timeout=60)
        await preload
    finally:
        await engine.stop()
    assert result.embeddings.shape == (1, 384)
