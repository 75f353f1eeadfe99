"""Delivery from the device worker to requests: a request's outputs all come from one version
of its model's weights. When a model's folder is replaced and the model reloaded between two
batches of one request, mixing the two versions' outputs would answer with vectors no model
gives: the request fails with a 503 instead (the soak benchmark found such a mixed answer).
A reload of the same files (an eviction and a load from disk) is the same version."""

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


OLD = (("model.safetensors", 1000, 1),)
NEW = (("model.safetensors", 1000, 2),)


async def test_a_request_computed_by_one_version_is_answered_across_reloads():
    job = _job(3)
    _deliver(_batch(job, 0, 1), ["a", "b"], OLD)
    assert not job.future.done()
    _deliver(_batch(job, 2), ["c"], tuple(OLD))  # evicted and loaded again from the same files
    assert job.future.result() == ["a", "b", "c"]


async def test_a_request_that_spans_two_loads_fails_instead_of_mixing_them():
    job = _job(3)
    _deliver(_batch(job, 0, 1), ["old", "old"], OLD)
    _deliver(_batch(job, 2), ["new"], NEW)  # its folder was replaced and the model reloaded between the batches
    with pytest.raises(NotReady, match="reloaded with new weights while this request was computed"):
        job.future.result()
