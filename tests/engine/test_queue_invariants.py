"""The scheduler's and swap planner's invariants under random traffic (hypothesis), on real
tiny models behind a budget that holds the pinned model and one other:

- queued tokens never exceed the tokens of requests still waiting for an answer, per model
  (answered, expired and cancelled work leaves the queue at once: no phantom depth), and
  are zero once every request is answered;
- no model waits behind another that cannot load: requests for a model that can never fit
  beside the pinned one fail fast with NoRoom, and every other request is answered within
  its bound, with the sentence-transformers output of its model;
- the budget holds and the pinned model stays resident.

Token counts come from the `tokenizers` library directly, not from the engine."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer

from engine import DeadlineExceeded, Engine, EngineConfig, spec_from_folder
from engine.errors import NoRoom
from engine.pool import footprint
from tests.texts import varied_texts
from tests.tiny import tiny_bert, write_sentence_transformers_config

TEXTS = varied_texts(12, seed=5)
MODELS = ("pinned", "m1", "m2", "m3", "big")


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    from sentence_transformers import SentenceTransformer

    root = tmp_path_factory.mktemp("invariants")
    specs, references = [], {}
    for seed, name in enumerate(MODELS):
        hidden = 128 if name == "big" else 32
        folder = tiny_bert(root / name, hidden=hidden, heads=4, intermediate=2 * hidden, seed=seed)
        write_sentence_transformers_config(folder)
        specs.append(replace(spec_from_folder(name, folder), pin=name == "pinned"))
        references[name] = SentenceTransformer(str(folder), device="cpu").encode(TEXTS, normalize_embeddings=True)
    tokenizer = Tokenizer.from_file(str(root / "m1" / "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.enable_truncation(specs[1].max_length)
    token_counts = [len(encoding.ids) for encoding in tokenizer.encode_batch(TEXTS)]
    return specs, references, token_counts


SUBMIT = st.tuples(st.just("submit"), st.sampled_from(MODELS), st.lists(st.integers(0, len(TEXTS) - 1), min_size=1,
                                                                         max_size=6),
                   st.one_of(st.none(), st.integers(1, 400)))
CANCEL = st.tuples(st.just("cancel"), st.integers(0, 30))
SLEEP = st.tuples(st.just("sleep"), st.integers(0, 30))
TRAFFIC = st.lists(st.one_of(SUBMIT, SUBMIT, CANCEL, SLEEP), min_size=1, max_size=30)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(traffic=TRAFFIC)
def test_queue_and_swap_invariants_under_random_traffic(zoo, traffic):
    specs, references, token_counts = zoo
    sizes = {spec.name: footprint(spec, 4) for spec in specs}
    small = max(size for name, size in sizes.items() if name not in ("pinned", "big"))
    budget = sizes["pinned"] + max(small, sizes["big"] // 2)  # `big` can never fit beside `pinned`
    assert sizes["pinned"] + sizes["big"] > budget
    engine = Engine(specs, EngineConfig(device="cpu", dtype="float32", memory_budget=budget, host_cache=0,
                                        swap_age_seconds=0.01, max_batch_tokens=256))

    async def run():
        await engine.start()
        requests: list[tuple[str, list[int], asyncio.Task]] = []
        try:
            await engine.load("pinned")
            for operation in traffic:
                if operation[0] == "submit":
                    _, model, rows, deadline_ms = operation
                    deadline = None if deadline_ms is None else time.monotonic() + deadline_ms / 1000
                    call = engine.encode(model, [TEXTS[i] for i in rows], deadline=deadline)
                    requests.append((model, rows, asyncio.create_task(call)))
                elif operation[0] == "cancel" and requests:
                    requests[operation[1] % len(requests)][2].cancel()
                elif operation[0] == "sleep":
                    await asyncio.sleep(operation[1] / 1000)
                await asyncio.sleep(0)  # let done-callbacks run, as the loop would between requests
                _check_queue(engine, requests, token_counts)
                assert engine.pool.device_bytes <= budget
            # every request is answered within its bound: nothing waits behind `big`
            await asyncio.wait_for(asyncio.gather(*(task for *_, task in requests), return_exceptions=True), 60)
            _check_queue(engine, requests, token_counts)
            assert engine.scheduler.queued_tokens == 0
            assert engine.pool.entries["pinned"].state == "resident"
        finally:
            await engine.stop()
        return requests

    for model, rows, task in asyncio.run(run()):
        if task.cancelled():
            continue
        error = task.exception()
        if model == "big":
            assert isinstance(error, NoRoom)
        elif error is not None:
            assert isinstance(error, DeadlineExceeded), error
        else:
            np.testing.assert_allclose(task.result().embeddings, references[model][rows], atol=1e-5)


def _check_queue(engine: Engine, requests, token_counts) -> None:
    """Queued tokens per model are at most what its unanswered requests hold."""
    waiting = {name: 0 for name in MODELS}
    for model, rows, task in requests:
        if not task.done():
            waiting[model] += sum(token_counts[i] for i in rows)
    for model, (items, tokens) in engine.queue_depth().items():
        assert tokens <= waiting[model], (model, tokens, waiting[model])
        assert (items == 0) == (tokens == 0)
