"""Every wait in the engine has a bound, and each test here proves one: deadlines fire while
the worker is idle, answered work leaves the queue at once, a model that cannot fit beside
the pinned ones fails fast and blocks nobody, operator loads time out, a drain ends when
nothing is pending, and a stop answers whatever is still queued. Each reproduces a defect
of issue 9 that hung or leaked before."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from engine import DeadlineExceeded, Engine, EngineConfig, NotReady, spec_from_folder
from engine.errors import Conflict, LoadTimeout, NoRoom
from engine.pool import footprint
from tests.tiny import tiny_bert, write_sentence_transformers_config

TEXTS = ["a short text", "another one, a little longer than the first", "third"]


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """Two 'large' tiny models (a, b) and a small one (c), with sentence-transformers configs."""
    root = tmp_path_factory.mktemp("bounds")
    shapes = {"a": (128, 4), "b": (128, 4), "c": (32, 2)}
    result = {}
    for seed, (name, (hidden, layers)) in enumerate(shapes.items()):
        folder = tiny_bert(root / name, hidden=hidden, heads=4, layers=layers, intermediate=2 * hidden, seed=seed)
        write_sentence_transformers_config(folder)
        result[name] = folder
    return result


@pytest.fixture(scope="module")
def references(folders):
    from sentence_transformers import SentenceTransformer

    return {name: SentenceTransformer(str(folder), device="cpu").encode(TEXTS, normalize_embeddings=True)
            for name, folder in folders.items()}


def _specs(folders, pin=()):
    from dataclasses import replace

    return [replace(spec_from_folder(name, folder), pin=name in pin) for name, folder in folders.items()]


def _pinned_a_engine(folders, **config) -> Engine:
    """`a` pinned, room beside it for `c` but never for `b` (the issue's scenario)."""
    specs = _specs(folders, pin=("a",))
    sizes = {spec.name: footprint(spec, 4) for spec in specs}
    budget = sizes["a"] + sizes["c"] + (sizes["b"] - sizes["c"]) // 2
    assert sizes["a"] + sizes["b"] > budget >= sizes["a"] + sizes["c"]
    return Engine(specs, EngineConfig(device="cpu", dtype="float32", memory_budget=budget, **config))


async def test_a_model_that_cannot_fit_beside_pinned_ones_fails_fast_and_blocks_nobody(folders, references):
    engine = _pinned_a_engine(folders)
    await engine.start()
    try:
        await engine.load("a")
        started = time.monotonic()
        refused, served = await asyncio.gather(
            engine.encode("b", TEXTS, deadline=time.monotonic() + 1.5), engine.encode("c", TEXTS),
            return_exceptions=True)
        elapsed = time.monotonic() - started
    finally:
        await engine.stop()
    assert isinstance(refused, NoRoom) and refused.status == 503
    assert "'b'" in refused.message and "pinned" in refused.message and "['a']" in refused.message
    np.testing.assert_allclose(served.embeddings, references["c"], atol=1e-5)
    assert elapsed < 1.5  # neither waited for the deadline
    assert engine.queue_depth() == {"a": (0, 0), "b": (0, 0), "c": (0, 0)}


async def test_the_swap_planner_skips_a_model_that_no_longer_fits_and_serves_the_next(folders, references):
    """`b` is queued while it could fit; then `a` is pinned in by an operator load, so `b`
    can never fit. The planner must fail `b` and go on to `c`, which waits behind it."""
    specs = _specs(folders, pin=("a",))
    sizes = {spec.name: footprint(spec, 4) for spec in specs}
    engine = Engine(specs, EngineConfig(device="cpu", dtype="float32", swap_age_seconds=0.05,
                                        memory_budget=sizes["a"] + sizes["c"] + (sizes["b"] - sizes["c"]) // 2))
    await engine.start()
    try:
        load_a = asyncio.create_task(engine.load("a"))  # the loader thread is busy with `a` ...
        await asyncio.sleep(0)
        b = asyncio.create_task(engine.encode("b", TEXTS))  # ... when `b`, then `c`, queue up
        await asyncio.sleep(0.01)
        c = asyncio.create_task(engine.encode("c", TEXTS))
        await asyncio.wait_for(load_a, 30)
        outcome_b, outcome_c = await asyncio.wait_for(asyncio.gather(b, c, return_exceptions=True), 10)
    finally:
        await engine.stop()
    assert isinstance(outcome_b, NoRoom)
    np.testing.assert_allclose(outcome_c.embeddings, references["c"], atol=1e-5)


def _slow_loads(engine: Engine, seconds: float) -> None:
    """Fault injection: a disk that takes `seconds` to read any model."""
    real = engine._load_model

    def slow(spec):
        time.sleep(seconds)
        return real(spec)

    engine.pool._load = slow


async def test_a_deadline_fires_while_the_worker_is_idle_and_releases_the_queued_tokens(folders):
    engine = Engine(_specs(folders), EngineConfig(device="cpu", dtype="float32", max_queue_tokens=60))
    _slow_loads(engine, 2.0)
    await engine.start()
    try:
        started = time.monotonic()
        with pytest.raises(DeadlineExceeded):  # its model is still loading: nothing else wakes the worker
            await engine.encode("b", ["word " * 40], deadline=time.monotonic() + 0.3)
        assert time.monotonic() - started < 1.0
        assert engine.queue_depth()["b"] == (0, 0)  # no phantom tokens ...
        # ... so a request that needs most of the queue is admitted, not refused as "queue full"
        admitted = await engine.encode("b", ["word " * 40])
        assert admitted.embeddings.shape == (1, 128)
    finally:
        await engine.stop()


async def test_a_cancelled_caller_leaves_the_queue_at_once(folders):
    engine = Engine(_specs(folders), EngineConfig(device="cpu", dtype="float32"))
    _slow_loads(engine, 1.0)
    await engine.start()
    try:
        call = asyncio.create_task(engine.encode("b", ["word " * 40] * 4))
        while engine.queue_depth()["b"] == (0, 0):
            await asyncio.sleep(0.005)
        call.cancel()  # what the gateway does when the client hangs up
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert engine.queue_depth()["b"] == (0, 0)
        assert engine.scheduler.queued_tokens == 0
    finally:
        await engine.stop()


async def test_an_operator_load_waits_for_room_at_most_the_load_timeout(folders):
    specs = _specs(folders)
    sizes = {spec.name: footprint(spec, 4) for spec in specs}
    engine = Engine(specs, EngineConfig(device="cpu", dtype="float32", memory_budget=sizes["a"] + sizes["c"],
                                        load_timeout_seconds=0.5))
    await engine.start()
    try:
        await engine.pool.acquire("a")  # a batch is running on `a`: `b` cannot have its room yet
        started = time.monotonic()
        with pytest.raises(LoadTimeout, match="'b'"):
            await engine.load("b")
        assert 0.4 < time.monotonic() - started < 2.0
        engine.pool.release("a")
        assert await asyncio.wait_for(engine.load("b"), 30) == "resident"  # once the lease ends, it loads
    finally:
        await engine.stop()


async def test_an_operator_load_of_a_model_that_cannot_fit_beside_pinned_ones_is_refused_at_once(folders):
    engine = _pinned_a_engine(folders)
    await engine.start()
    try:
        await engine.load("a")
        with pytest.raises(NoRoom):
            await asyncio.wait_for(engine.load("b"), 1.0)
    finally:
        await engine.stop()


async def test_unloading_a_pinned_or_busy_model_is_a_conflict(folders):
    engine = _pinned_a_engine(folders)
    await engine.start()
    try:
        await engine.load("a")
        await engine.load("c")
        with pytest.raises(Conflict, match="pinned"):
            await engine.unload("a")
        await engine.pool.acquire("c")
        with pytest.raises(Conflict, match="running a batch"):
            await engine.unload("c")
        engine.pool.release("c")
        assert await engine.unload("c") in ("host", "disk")
        assert await engine.unload("c") in ("host", "disk")  # not resident: nothing to do, no error
    finally:
        await engine.stop()


async def test_a_drain_with_nothing_pending_ends_at_once(folders):
    engine = Engine(_specs(folders), EngineConfig(device="cpu", dtype="float32"))
    await engine.start()
    await engine.encode("c", TEXTS)
    started = time.monotonic()
    await engine.stop(drain_seconds=30)
    assert time.monotonic() - started < 1.0


async def test_a_drain_waits_for_calls_in_progress_then_stop_answers_what_is_left(folders, references):
    engine = Engine(_specs(folders), EngineConfig(device="cpu", dtype="float32"))
    _slow_loads(engine, 1.0)
    await engine.start()
    finishing = asyncio.create_task(engine.encode("c", TEXTS))
    await asyncio.sleep(0.05)
    started = time.monotonic()
    await engine.stop(drain_seconds=30)  # waits for `c` to load and answer, not 30 s
    assert time.monotonic() - started < 10
    np.testing.assert_allclose((await finishing).embeddings, references["c"], atol=1e-5)

    engine = Engine(_specs(folders), EngineConfig(device="cpu", dtype="float32"))
    _slow_loads(engine, 3.0)
    await engine.start()
    stranded = asyncio.create_task(engine.encode("b", TEXTS))
    await asyncio.sleep(0.05)
    await engine.stop(drain_seconds=0.2)  # the drain time is up before `b` loads
    with pytest.raises(NotReady):
        await asyncio.wait_for(stranded, 1.0)  # answered, not left hanging
    with pytest.raises(NotReady):
        await engine.encode("c", TEXTS)  # and nothing new is accepted


async def test_two_cold_models_that_fit_only_one_at_a_time_are_both_served(folders, references):
    """Each load is for queued work; the other model's swap must not evict it before that
    work runs (they used to evict each other for ever, serving nobody)."""
    specs = _specs(folders)
    sizes = {spec.name: footprint(spec, 4) for spec in specs}
    engine = Engine(specs, EngineConfig(device="cpu", dtype="float32", memory_budget=max(sizes.values()),
                                        host_cache=0, swap_age_seconds=0.0))
    await engine.start()
    try:
        calls = [engine.encode(name, TEXTS) for name in ("a", "b", "a", "b", "c", "a")]
        results = await asyncio.wait_for(asyncio.gather(*calls), 60)
    finally:
        await engine.stop()
    for name, result in zip(("a", "b", "a", "b", "c", "a"), results):
        np.testing.assert_allclose(result.embeddings, references[name], atol=1e-5)
