"""The native Python client, sync and async, JSON and msgpack, against the real gateway;
retries on 429 / 503 honouring Retry-After, and timeouts, against scripted transports."""

from __future__ import annotations

import subprocess
import sys
import time

import httpx
import numpy as np
import pytest

from connectors import AsyncShoalClient, ShoalClient, ShoalError
from connectors.client import retry_after_seconds
from tests import references

MODEL = "all-MiniLM-L6-v2"
TEXTS = ["The river runs through the valley.", "Coffee is brewed from roasted beans.", "Ünïcödé façade"]


def test_import_connectors_pulls_no_torch_and_no_vector_database():
    code = ("import sys, connectors, connectors.weaviate; from connectors import ShoalClient; "
            "print(sorted(m for m in ('torch', 'chromadb', 'weaviate', 'engine', 'gateway') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("msgpack", [True, False])
def test_sync_client_dense_sparse_multivector_score(task_server, task_models, minilm_spec, minilm_reference, msgpack):
    with ShoalClient(task_server.url, model=MODEL, msgpack=msgpack) as shoal:
        dense = shoal.encode(TEXTS)
        assert dense.embeddings.dtype == np.float32 and dense.input_tokens > 0
        references.assert_vectors_close(dense.embeddings, minilm_reference.encode(TEXTS, normalize_embeddings=True))
        references.assert_vectors_close(shoal.embed(TEXTS[:1], dimensions=64),
                                        references.dense(minilm_spec.path, TEXTS[:1], dimensions=64))
        splade = task_models.folder("splade")
        sparse = shoal.encode(TEXTS, model="splade", output="sparse", return_labels=True)
        references.assert_sparse_close(sparse.embeddings, references.sparse(splade, TEXTS))
        assert [references.sparse_labels(splade, indices) for indices, _ in sparse.embeddings] == sparse.labels
        query = shoal.encode(["which river"], model="colbert", output="multivector", input_type="query")
        (expected,) = references.colbert_vectors(task_models.model("colbert"), ["which river"], is_query=True)
        assert expected.shape == (24, 16)  # expanded to the query length
        references.assert_vectors_close(query.embeddings[0], expected)
        documents = ["coffee", "a river in the mountains", "espresso beans"]
        ranking = shoal.score("mountain river", documents, model="rerank", top_n=2)
        references.assert_ranked([{"index": i, "score": s} for i, s in ranking.results],
                                 references.rerank_scores(task_models.folder("rerank"), "mountain river", documents),
                                 top_n=2)
        assert {m["id"] for m in shoal.models()} == {MODEL, "splade", "colbert", "rerank"}
        with pytest.raises(ShoalError) as caught:
            shoal.encode(TEXTS, model="nope")
        assert caught.value.status == 404 and caught.value.kind == "model_not_found"


async def test_async_client(task_server, minilm_reference):
    async with AsyncShoalClient(task_server.url, model=MODEL) as shoal:
        vectors = await shoal.embed(TEXTS, input_type="query")
        references.assert_vectors_close(vectors, minilm_reference.encode_query(TEXTS, normalize_embeddings=True))
        with pytest.raises(ShoalError) as caught:
            await shoal.encode([""])
        assert caught.value.status == 422


def _scripted(statuses: list[tuple[int, dict]], calls: list):
    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(time.monotonic())
        status, headers = statuses[min(len(calls) - 1, len(statuses) - 1)]
        if status == 200:
            return httpx.Response(200, json={"model": MODEL, "output": "dense", "embeddings": [[1.0, 0.0]],
                                             "usage": {"input_tokens": 3}})
        return httpx.Response(status, headers=headers, json={"error": {"type": "overloaded", "message": "busy"}})
    return handler


def test_retries_429_and_503_honouring_retry_after():
    calls: list = []
    transport = httpx.MockTransport(_scripted([(429, {"Retry-After": "0.2"}), (503, {}), (200, {})], calls))
    shoal = ShoalClient("http://shoal.test", model=MODEL, transport=transport, backoff=0.05, msgpack=False)
    assert shoal.embed(["a"]).tolist() == [[1.0, 0.0]]
    assert len(calls) == 3
    assert calls[1] - calls[0] >= 0.2  # Retry-After honoured
    assert 0.05 <= calls[2] - calls[1] < 0.2  # no header: exponential backoff


def test_retries_give_up_with_the_last_error():
    calls: list = []
    transport = httpx.MockTransport(_scripted([(429, {"Retry-After": "0"})], calls))
    shoal = ShoalClient("http://shoal.test", model=MODEL, transport=transport, retries=2, msgpack=False)
    with pytest.raises(ShoalError) as caught:
        shoal.embed(["a"])
    assert caught.value.status == 429 and caught.value.kind == "overloaded" and len(calls) == 3


async def test_async_retries_and_timeouts():
    calls: list = []
    transport = httpx.MockTransport(_scripted([(503, {"Retry-After": "0.1"}), (200, {})], calls))
    shoal = AsyncShoalClient("http://shoal.test", model=MODEL, transport=transport, msgpack=False)
    assert (await shoal.embed(["a"])).shape == (1, 2) and len(calls) == 2

    def slow(request):
        raise httpx.ReadTimeout("timed out", request=request)
    timing_out = AsyncShoalClient("http://shoal.test", model=MODEL, transport=httpx.MockTransport(slow), timeout=0.1)
    with pytest.raises(httpx.ReadTimeout):  # a request that may have run is not replayed
        await timing_out.embed(["a"])


def test_a_real_timeout_against_the_gateway(task_server):
    with ShoalClient(task_server.url, model=MODEL, timeout=1e-4, retries=0) as shoal:
        with pytest.raises(httpx.TimeoutException):
            shoal.embed(["a"] * 200)


def test_retry_after_forms():
    assert retry_after_seconds(httpx.Response(429, headers={"Retry-After": "3"}), 1.0) == 3.0
    assert retry_after_seconds(httpx.Response(429, headers={"Retry-After": "soon"}), 1.0) == 1.0
    assert retry_after_seconds(httpx.Response(429), 0.5) == 0.5
    date = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 30))
    assert 25 <= retry_after_seconds(httpx.Response(503, headers={"Retry-After": date}), 1.0) <= 31


def test_classify_with_request_labels_and_extract(tmp_path):
    """classify() with labels (a zero-shot NLI model, against transformers' pipeline) and
    without (a fixed-label classifier), extract() on a BIO tagger (against the
    token-classification pipeline), over real HTTP."""
    from engine import Engine, EngineConfig, spec_from_folder
    from tests import zoo
    from tests.conftest import LiveServer
    from tests.engine.test_zero_shot import nli_model, pipeline_scores

    nli = nli_model(tmp_path / "nli", "bert", "entailment-last")
    intent, _ = zoo.classifier(tmp_path / "intent")
    ner, _ = zoo.entity_tagger(tmp_path / "ner")
    specs = [spec_from_folder(name, folder) for name, folder in (("nli", nli), ("intent", intent), ("ner", ner))]
    labels = ["billing", "a bug", "sales"]
    with LiveServer(Engine(specs, EngineConfig(device="cpu", dtype="float32"))) as live, \
            ShoalClient(live.url) as shoal:
        for multi_label in (False, True):
            got = shoal.classify(TEXTS, model="nli", labels=labels, multi_label=multi_label)
            want = pipeline_scores(nli, TEXTS, labels, multi_label)
            for pairs, expected in zip(got, want):
                np.testing.assert_allclose([dict(pairs)[label] for label in labels], expected, atol=1e-5)
                assert [score for _, score in pairs] == sorted((score for _, score in pairs), reverse=True)
        above = shoal.classify(TEXTS, model="nli", labels=labels, multi_label=True, threshold=0.5)
        for kept, expected in zip(above, pipeline_scores(nli, TEXTS, labels, True)):
            assert {label for label, _ in kept} == {label for label, score in zip(labels, expected) if score >= 0.5}
        for pairs, expected in zip(shoal.classify(TEXTS, model="intent"), references.classifications(intent, TEXTS)):
            assert dict(pairs) == pytest.approx(expected, abs=1e-5)
        found = shoal.extract(TEXTS, model="ner")
        want = references.entities(ner, TEXTS)
        assert [[(e["label"], e["start"], e["end"]) for e in entities] for entities in found] == \
            [[(e["entity_group"], e["start"], e["end"]) for e in entities] for entities in want]
        with pytest.raises(ShoalError) as caught:
            shoal.classify(TEXTS, model="intent", labels=labels)
        assert caught.value.status == 422
