"""Delivery from the device worker to requests: a request's outputs all come from one load of
its model. When a model is unloaded (or its folder replaced) between two batches of one
request, mixing the two loads' outputs would answer with vectors no model gives: the request
fails with a 503 instead (the soak benchmark found such a mixed answer)."""

from __future__ import annotations

import asyncio

import pytest

from engine.errors import NotReady
from engine.scheduler import Batch, Job, WorkItem
from engine.tasks import Head, Work
from engine.tokenize import Tokenized
from engine.worker import _deliver


def _job(items: int) -> Job:
    tokenized = [Tokenized(ids=[101, 7, 102], type_ids=[0, 0, 0]) for _ in range(items)]
    return Job("m", Work(next(iter(Head))), tokenized, asyncio.get_running_loop().create_future(), finish=list)


def _batch(job: Job, *indexes: int) -> Batch:
    return Batch(job.model, job.work, [WorkItem(job, i) for i in indexes])


async def test_a_request_computed_by_one_load_is_answered():
    job, load = _job(3), object()
    _deliver(_batch(job, 0, 1), ["a", "b"], load)
    assert not job.future.done()
    _deliver(_batch(job, 2), ["c"], load)
    assert job.future.result() == ["a", "b", "c"]


async def test_a_request_that_spans_two_loads_fails_instead_of_mixing_them():
    job = _job(3)
    _deliver(_batch(job, 0, 1), ["old", "old"], object())
    _deliver(_batch(job, 2), ["new"], object())  # the model was reloaded between the batches
    with pytest.raises(NotReady, match="reloaded while this request was computed"):
        job.future.result()
