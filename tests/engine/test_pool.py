"""The model pool's invariants under random sequences of leases, loads, unloads and
failures (hypothesis), on real tiny models: resident bytes never exceed the budget, leased
and pinned models are never evicted, eviction follows LRU order."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine import EngineObserver, ModelLoadError, spec_from_folder
from engine.errors import Conflict
from engine.attention import select_backend
from engine.pool import ModelPool, footprint
from engine.served import ServedModel
from tests.tiny import tiny_bert

CPU = torch.device("cpu")


class Events(EngineObserver):
    def __init__(self):
        self.loads: list[tuple[str, str]] = []
        self.evictions: list[tuple[str, str]] = []
        self.failures: list[str] = []

    def model_loaded(self, model, seconds, source="disk"):
        self.loads.append((model, source))

    def model_evicted(self, model, reason):
        self.evictions.append((model, reason))

    def model_load_failed(self, model):
        self.failures.append(model)

    def pool_lookup(self, result):
        pass


@pytest.fixture(scope="module")
def specs(tmp_path_factory):
    root = tmp_path_factory.mktemp("pool")
    result = [spec_from_folder(f"m{i}", tiny_bert(root / f"m{i}", hidden=16 * (i % 3 + 1), heads=2, seed=i))
              for i in range(5)]
    broken = root / "broken"
    tiny_bert(broken)
    (broken / "model.safetensors").write_bytes(b"not a safetensors file")
    return result + [spec_from_folder("broken", broken)]


def _load(spec):
    return ServedModel.load(spec, CPU, torch.float32, select_backend(CPU))


def _pool(specs, budget, host_budget=0, events=None):
    pool = ModelPool(specs, _load, 4, budget, host_budget, events or Events())
    from concurrent.futures import ThreadPoolExecutor

    pool.executor = ThreadPoolExecutor(1)
    return pool


OPERATIONS = st.lists(st.tuples(st.sampled_from(["acquire", "release", "unload", "touch"]), st.integers(0, 5)),
                      min_size=1, max_size=25)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(operations=OPERATIONS, slots=st.integers(1, 3), pin_first=st.booleans())
def test_pool_invariants_under_random_operations(specs, operations, slots, pin_first):
    chosen = [replace(specs[0], pin=pin_first)] + specs[1:]
    largest = max(footprint(s, 4) for s in chosen)
    budget = largest * (slots + int(pin_first))
    events = Events()
    pool = _pool(chosen, budget, host_budget=largest * 2, events=events)
    names = [s.name for s in chosen]

    async def run():
        held: list[str] = []
        if pin_first:
            await pool.ensure(names[0])
        for operation, index in operations:
            name = names[index]
            entry = pool.entries[name]
            evictable_before = {n: e.last_used or 0.0 for n, e in pool.entries.items()
                                if e.state == "resident" and e.leases == 0 and not e.pinned}
            evicted_before = len(events.evictions)
            if operation == "acquire":
                if entry.state != "resident" and not pool.can_make_room(name):
                    continue  # would wait for a lease to end: nothing else runs here to end it
                try:
                    await pool.acquire(name)
                    held.append(name)
                except ModelLoadError:
                    assert name == "broken" and entry.state == "failed" and entry.error
            elif operation == "release" and name in held:
                held.remove(name)
                pool.release(name)
            elif operation == "unload":
                busy = entry.pinned or (entry.state == "resident" and entry.leases > 0)
                try:
                    pool.unload(name)
                    assert not busy
                except Conflict as conflict:  # pinned or running: refused, naming why
                    assert busy and name in conflict.message
                    assert entry.state == "resident"
            elif operation == "touch" and entry.state == "resident":
                entry.last_used = time.time()
            # invariants
            assert pool.device_bytes <= pool.budget
            assert pool.host_bytes <= pool.host_budget
            for held_name in held:
                assert pool.entries[held_name].state == "resident"
            if pin_first:
                assert pool.entries[names[0]].state == "resident"
            assert pool.entries["broken"].state in ("disk", "failed")
            lru_evictions = [n for n, reason in events.evictions[evicted_before:] if reason == "lru"]
            if lru_evictions:  # the evicted ones were the least recently used candidates
                ranked = sorted(evictable_before, key=evictable_before.get)
                assert lru_evictions == ranked[:len(lru_evictions)]
        for name in held:
            pool.release(name)

    asyncio.run(run())


async def test_host_tier_reload_and_sources(specs):
    events = Events()
    one = footprint(specs[0], 4)
    pool = _pool(specs[:2], budget=max(one, footprint(specs[1], 4)), host_budget=10 * one, events=events)
    await pool.ensure("m0")
    await pool.ensure("m1")  # evicts m0 to the host tier
    assert pool.entries["m0"].state == "host" and pool.host_bytes == pool.entries["m0"].bytes
    await pool.ensure("m0")
    assert events.loads == [("m0", "disk"), ("m1", "disk"), ("m0", "host")]
    assert events.evictions == [("m0", "lru"), ("m1", "lru")]


async def test_no_host_tier_means_back_to_disk(specs):
    events = Events()
    pool = _pool(specs[:2], budget=footprint(specs[1], 4), host_budget=0, events=events)
    await pool.ensure("m0")
    await pool.ensure("m1")
    assert pool.entries["m0"].state == "disk" and pool.entries["m0"].served is None


async def test_a_model_larger_than_the_budget_is_refused_with_a_clear_error(specs):
    pool = _pool(specs[:1], budget=1024)
    entry = pool.entries["m0"]
    assert entry.state == "failed" and "memory budget" in entry.error
    with pytest.raises(ModelLoadError, match="memory budget"):
        await pool.ensure("m0")


async def test_failed_loads_report_then_retry_after_cooldown(specs, monkeypatch):
    events = Events()
    pool = _pool(specs, budget=10 * footprint(specs[0], 4), events=events)
    entry = pool.entries["broken"]
    # its safetensors header was unreadable when the spec was made: failed from the start
    assert entry.state == "failed" and "corrupt header" in entry.error
    with pytest.raises(ModelLoadError, match="corrupt header"):  # within the cooldown: no attempt
        await pool.ensure("broken")
    assert events.failures == []
    monkeypatch.setattr("engine.pool.RETRY_COOLDOWN_SECONDS", 0.0)
    with pytest.raises(ModelLoadError, match="broken"):  # a real attempt, which fails again
        await pool.ensure("broken")
    assert events.failures == ["broken"] and pool.entries["broken"].state == "failed"
    await pool.ensure("m1")  # other models are unaffected
    assert pool.entries["m1"].state == "resident"


async def test_concurrent_requests_for_a_cold_model_share_one_load(specs):
    events = Events()
    pool = _pool(specs[:1], budget=10 * footprint(specs[0], 4), events=events)
    served = await asyncio.gather(*(pool.ensure("m0") for _ in range(10)))
    assert len({id(s) for s in served}) == 1
    assert events.loads == [("m0", "disk")]


async def test_a_model_replaced_on_disk_comes_back_from_disk_not_from_the_host_tier(tmp_path):
    """An operator replaces a served model's folder, then unloads it: the next request must
    get the new model, not the old weights parked in the host tier."""
    import shutil

    from sentence_transformers import SentenceTransformer

    from engine import Engine, EngineConfig
    from tests.tiny import write_sentence_transformers_config

    texts = ["the old model", "or the new one"]
    folder = tiny_bert(tmp_path / "m", seed=1)
    write_sentence_transformers_config(folder)
    replacement = tiny_bert(tmp_path / "replacement", hidden=48, heads=4, seed=2)
    write_sentence_transformers_config(replacement)
    expected_new = SentenceTransformer(str(replacement), device="cpu").encode(texts, normalize_embeddings=True)
    events = Events()
    engine = Engine([spec_from_folder("m", folder)], EngineConfig(device="cpu", dtype="float32"), events)
    await engine.start()
    try:
        old = await engine.encode("m", texts)
        assert await engine.unload("m") == "host"
        shutil.rmtree(folder)
        shutil.copytree(replacement, folder)
        new = await engine.encode("m", texts)
    finally:
        await engine.stop()
    assert old.embeddings.shape == (2, 32)
    np.testing.assert_allclose(new.embeddings, expected_new, atol=1e-5)
    assert events.loads == [("m", "disk"), ("m", "disk")]


async def test_a_folder_deleted_while_served_fails_its_model_visibly_and_names_no_path(tmp_path):
    import shutil

    from engine import Engine, EngineConfig

    folder = tiny_bert(tmp_path / "gone", seed=3)
    engine = Engine([spec_from_folder("gone", folder)], EngineConfig(device="cpu", dtype="float32"))
    await engine.start()
    try:
        shutil.rmtree(folder)
        with pytest.raises(ModelLoadError) as refused:
            await engine.encode("gone", ["hello"])
        status = engine.models()[0]
    finally:
        await engine.stop()
    assert "'gone'" in refused.value.message and str(tmp_path) not in refused.value.message
    assert status.state == "failed" and status.error and str(tmp_path) not in status.error
    assert not engine.can_serve()
