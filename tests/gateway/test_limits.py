"""Every route enforces the same limits, and huge inputs cost what the model reads of them:
`--max-inputs` is a 413 in each protocol's own error shape (TEI's /predict included, which
also scores its pairs in one request), a multi-megabyte text is cut before it is tokenised
without changing its result, and /tokenize lists every token, untruncated."""

from __future__ import annotations

import asyncio
import time

import httpx
import numpy as np
import pytest
from tokenizers import Tokenizer

from engine import Engine, EngineConfig
from gateway.app import GatewaySettings
from tests.conftest import LiveServer, zoo_specs

MODEL = "all-MiniLM-L6-v2"
LIMIT = 4


@pytest.fixture(scope="module")
def limited(tmp_path_factory, minilm_spec):
    specs = [minilm_spec] + zoo_specs(tmp_path_factory.mktemp("limits"), ("rerank", "intent", "ner", "splade",
                                                                         "colbert"))
    engine = Engine(specs, EngineConfig(device="cpu", dtype="float32", max_inputs_per_request=LIMIT))
    with LiveServer(engine, GatewaySettings(max_body_bytes=32 * 2**20, preload=(MODEL,))) as live:
        yield live


def _texts(n: int) -> list[str]:
    return [f"text number {i}" for i in range(n)]


# route, body with n inputs, how the protocol's error body names its message
OVER_THE_LIMIT = {
    "native encode": ("/v1/encode", lambda n: {"model": MODEL, "inputs": _texts(n)}, lambda b: b["error"]["message"]),
    "native score": ("/v1/score", lambda n: {"model": "rerank", "query": "q", "documents": _texts(n)},
                     lambda b: b["error"]["message"]),
    "native classify": ("/v1/classify", lambda n: {"model": "intent", "inputs": _texts(n)},
                        lambda b: b["error"]["message"]),
    "native extract": ("/v1/extract", lambda n: {"model": "ner", "inputs": _texts(n)},
                       lambda b: b["error"]["message"]),
    "openai": ("/v1/embeddings", lambda n: {"model": MODEL, "input": _texts(n)}, lambda b: b["error"]["message"]),
    "tei embed": (f"/tei/{MODEL}/embed", lambda n: {"inputs": _texts(n)}, lambda b: b["error"]),
    "tei embed_all": ("/tei/colbert/embed_all", lambda n: {"inputs": _texts(n)}, lambda b: b["error"]),
    "tei embed_sparse": ("/tei/splade/embed_sparse", lambda n: {"inputs": _texts(n)}, lambda b: b["error"]),
    "tei rerank": ("/tei/rerank/rerank", lambda n: {"query": "q", "texts": _texts(n)}, lambda b: b["error"]),
    "tei predict pairs": ("/tei/rerank/predict", lambda n: {"inputs": [["q", t] for t in _texts(n)]},
                          lambda b: b["error"]),
    "tei predict texts": ("/tei/intent/predict", lambda n: {"inputs": [[t] for t in _texts(n)]},
                          lambda b: b["error"]),
    "tei tokenize": (f"/tei/{MODEL}/tokenize", lambda n: {"inputs": _texts(n)}, lambda b: b["error"]),
    "weaviate vectors": (f"/weaviate/{MODEL}/vectors", lambda n: {"texts": _texts(n)}, lambda b: b["error"]),
    "weaviate rerank": ("/weaviate/rerank/rerank", lambda n: {"query": "q", "documents": _texts(n)},
                        lambda b: b["error"]),
    "cohere embed": ("/v2/embed", lambda n: {"model": MODEL, "texts": _texts(n), "input_type": "search_document",
                                             "embedding_types": ["float"]}, lambda b: b["message"]),
    "cohere rerank": ("/v2/rerank", lambda n: {"model": "rerank", "query": "q", "documents": _texts(n)},
                      lambda b: b["message"]),
    "jina rerank": ("/v1/rerank", lambda n: {"model": "rerank", "query": "q", "documents": _texts(n)},
                    lambda b: b["detail"]),
    "jina multi-vector": ("/v1/multi-vector", lambda n: {"model": "colbert", "input": _texts(n)},
                          lambda b: b["detail"]),
    "ollama": ("/api/embed", lambda n: {"model": MODEL, "input": _texts(n)}, lambda b: b["error"]),
}


@pytest.mark.parametrize("case", list(OVER_THE_LIMIT))
def test_every_route_refuses_more_inputs_than_the_limit_with_a_413_in_its_shape(limited, case):
    path, body, message_of = OVER_THE_LIMIT[case]
    at_limit = httpx.post(limited.url + path, json=body(LIMIT), timeout=60)
    assert at_limit.status_code == 200, at_limit.text
    over = httpx.post(limited.url + path, json=body(LIMIT + 1), timeout=60)
    assert over.status_code == 413, over.text
    assert str(LIMIT) in message_of(over.json())


def test_tei_predict_scores_pairs_with_different_queries_as_the_cross_encoder_does(limited):
    from sentence_transformers import CrossEncoder

    pairs = [["what is a shoal", "a group of fish"], ["capital of france", "paris is in france"],
             ["what is a shoal", "a sandbank"], ["rust or python", "both are languages"]]
    reference = CrossEncoder(str(limited.gateway.engine.resolve("rerank").path), device="cpu").predict(pairs)
    response = httpx.post(limited.url + "/tei/rerank/predict", json={"inputs": pairs}, timeout=60)
    assert response.status_code == 200
    scores = [prediction[0]["score"] for prediction in response.json()]
    np.testing.assert_allclose(scores, reference, atol=1e-5)


def test_a_huge_text_is_cut_before_tokenising_without_changing_its_embedding(limited, minilm_reference):
    huge = " ".join(f"token{i % 977}" for i in range(400_000))  # about 3.6 MB
    expected = minilm_reference.encode([huge], normalize_embeddings=True)  # tokenises all of it

    async def send():
        async with httpx.AsyncClient(base_url=limited.url, timeout=120) as client:
            big = [asyncio.create_task(client.post("/v1/encode", json={"model": MODEL, "inputs": [huge]}))
                   for _ in range(2)]
            await asyncio.sleep(0.3)  # both are being read and tokenised
            started = time.monotonic()
            small = await client.post("/v1/encode", json={"model": MODEL, "inputs": ["one"]})
            return small, time.monotonic() - started, await asyncio.gather(*big)

    small, small_seconds, big = asyncio.run(send())
    assert small.status_code == 200
    assert small_seconds < 3.0  # not stuck behind two multi-megabyte tokenisations
    for response in big:
        assert response.status_code == 200
        np.testing.assert_allclose(response.json()["embeddings"], expected, atol=1e-5)


def test_truncate_false_still_refuses_a_huge_text(limited):
    huge = "word " * 200_000
    response = httpx.post(limited.url + "/v1/encode", json={"model": MODEL, "inputs": [huge], "truncate": False},
                          timeout=60)
    assert response.status_code == 422 and response.json()["error"]["type"] == "input_too_long"


def test_tokenize_lists_every_token_untruncated(limited, minilm_spec):
    text = " ".join(f"word{i}" for i in range(400))  # far more than the model's 256 tokens
    reference = Tokenizer.from_file(str(minilm_spec.path / "tokenizer.json"))
    reference.no_truncation()
    reference.no_padding()
    expected = reference.encode(text).ids
    assert len(expected) > 256
    response = httpx.post(limited.url + f"/tei/{MODEL}/tokenize", json={"inputs": text}, timeout=60)
    assert response.status_code == 200
    assert [token["id"] for token in response.json()[0]] == expected
    too_big = httpx.post(limited.url + f"/tei/{MODEL}/tokenize", json={"inputs": "a " * 60_000}, timeout=60)
    assert too_big.status_code == 413 and "characters" in too_big.json()["error"]


def test_a_long_query_with_a_long_document_is_scored_without_blowing_up(limited):
    """The tokenizers library enumerates the overflowing pieces of a truncated pair, which for
    two sides of ~100k tokens each runs out of memory; the length guard cuts both first."""
    query = " ".join(f"query{i}" for i in range(30_000))
    document = " ".join(f"document{i}" for i in range(30_000))
    started = time.monotonic()
    response = httpx.post(limited.url + "/v1/score", json={"model": "rerank", "query": query,
                                                            "documents": [document, "short"]}, timeout=60)
    assert response.status_code == 200 and time.monotonic() - started < 10
    assert sorted(r["index"] for r in response.json()["results"]) == [0, 1]
