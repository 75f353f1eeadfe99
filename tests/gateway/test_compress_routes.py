"""/v1/compress over real HTTP on loopback: token-level compression against the llmlingua
package (its LLMLingua-2 path, in its own environment: tests/engine/test_compress.py), query-aware
pruning against sentence-transformers' CrossEncoder, every bad input as a 4xx in the native
error shape with the server still serving, and the Python client's `compress` and
`prompt_context` (retrieve from Chroma, rerank, compress)."""

from __future__ import annotations

import httpx
import msgspec
import numpy as np
import pytest

from connectors.client import AsyncShoalClient, ShoalClient, ShoalError, prompt_context
from engine import Engine, EngineConfig, spec_from_folder
from engine.compress import split_sentences
from gateway.app import GatewaySettings
from tests.conftest import LiveServer
from tests.engine.test_compress import (LLMLINGUA_PYTHON, LONG, MARKS, MISSING, PASSAGE, QUERY, SHORT, keep_drop_bert,
                                        llmlingua_answers, reranker)

MAX_INPUTS = 32
BODY_LIMIT = 2**20
# (contexts, rate, force_tokens) asked of the package and, over HTTP, of Shoal
HTTP_CASES = [(SHORT, 0.5, []), (LONG, 0.33, ["\n", "?"]), ([SHORT, MARKS], 0.7, ["\n"])]


@pytest.fixture(scope="module")
def served(tmp_path_factory, minilm_spec):
    root = tmp_path_factory.mktemp("compress-http")
    compressor = keep_drop_bert(root / "bert-base-multilingual-cased-keep-drop")
    rerank = reranker(root / "rerank")
    specs = [spec_from_folder("llmlingua-2", compressor), spec_from_folder("rerank", rerank), minilm_spec]
    engine = Engine(specs, EngineConfig(device="cpu", dtype="float32", max_inputs_per_request=MAX_INPUTS))
    with LiveServer(engine, GatewaySettings(max_body_bytes=BODY_LIMIT)) as live:
        yield live, compressor, rerank


@pytest.fixture(scope="module")
def package_answers(served):
    if not LLMLINGUA_PYTHON.exists():
        pytest.skip(MISSING)
    _, compressor, _ = served
    return llmlingua_answers([(compressor, HTTP_CASES)])[0]


def post(live, body: dict, msgpack: bool = False) -> httpx.Response:
    if msgpack:
        return httpx.post(live.url + "/v1/compress", content=msgspec.msgpack.encode(body), timeout=120,
                          headers={"content-type": "application/msgpack", "accept": "application/msgpack"})
    return httpx.post(live.url + "/v1/compress", json=body, timeout=120)


@pytest.mark.parametrize("case", range(len(HTTP_CASES)))
@pytest.mark.parametrize("msgpack", [False, True], ids=["json", "msgpack"])
def test_token_level_compression_is_the_packages(served, package_answers, case, msgpack):
    live, _, _ = served
    context, rate, forced = HTTP_CASES[case]
    expected = package_answers[case]
    several = isinstance(context, list)
    body = {"model": "llmlingua-2", "contexts" if several else "context": context, "rate": rate,
            "force_tokens": forced}
    response = post(live, body, msgpack)
    assert response.status_code == 200, response.text
    answer = msgspec.msgpack.decode(response.content) if msgpack else response.json()
    assert answer["compressed"] == expected["compressed_prompt"]
    assert (answer["original_tokens"], answer["kept_tokens"]) == (expected["origin_tokens"],
                                                                  expected["compressed_tokens"])
    assert answer["model"] == "llmlingua-2" and answer["usage"]["input_tokens"] > 0
    if several:
        assert [r["compressed"] for r in answer["results"]] == expected["compressed_prompt_list"]
        assert sum(r["original_tokens"] for r in answer["results"]) == answer["original_tokens"]
    else:
        assert set(answer) == {"model", "compressed", "original_tokens", "kept_tokens", "usage"}


def test_query_pruning_over_http_keeps_crossencoders_best(served):
    from tests.references import rerank_scores

    live, _, rerank = served
    response = post(live, {"model": "rerank", "context": PASSAGE, "query": QUERY, "top_k": 3, "return_scores": True})
    assert response.status_code == 200, response.text
    answer = response.json()
    spans = split_sentences(PASSAGE)
    reference = rerank_scores(rerank, QUERY, [PASSAGE[s:e] for s, e in spans])
    sentences = answer["sentences"]
    assert [(s["start"], s["end"], s["text"]) for s in sentences] == [(s, e, PASSAGE[s:e]) for s, e in spans]
    np.testing.assert_allclose([s["score"] for s in sentences], reference, atol=1e-5)
    best = set(np.argsort(-reference)[:3].tolist())
    assert [s["kept"] for s in sentences] == [i in best for i in range(len(spans))]
    assert answer["compressed"].startswith(next(s["text"] for s in sentences if s["kept"]))
    assert answer["kept_tokens"] < answer["original_tokens"]
    # several contexts: one result each, the highlight data under each
    several = post(live, {"model": "rerank", "contexts": [PASSAGE, "Just one."], "query": QUERY, "threshold": 0.0,
                          "return_scores": True}).json()
    assert [len(r["sentences"]) for r in several["results"]] == [len(spans), 1]
    assert several["results"][1]["compressed"] == "Just one." and "sentences" not in several


BAD = [
    ("empty context", {"model": "llmlingua-2", "context": ""}, 422, "invalid_request", "empty"),
    ("blank context", {"model": "llmlingua-2", "context": " \n "}, 422, "invalid_request", "empty"),
    ("no context", {"model": "llmlingua-2"}, 422, "invalid_request", "exactly one"),
    ("both", {"model": "llmlingua-2", "context": "a", "contexts": ["b"]}, 422, "invalid_request", "exactly one"),
    ("empty contexts", {"model": "llmlingua-2", "contexts": []}, 422, "invalid_request", "non-empty"),
    ("context not text", {"model": "llmlingua-2", "context": 7}, 422, "invalid_request", "context"),
    ("rate zero", {"model": "llmlingua-2", "context": "a b", "rate": 0}, 422, "invalid_request", "above 0"),
    ("rate above one", {"model": "llmlingua-2", "context": "a b", "rate": 1.5}, 422, "invalid_request", "at most 1"),
    ("rate as text", {"model": "llmlingua-2", "context": "a b", "rate": "half"}, 422, "invalid_request", "rate"),
    ("rate and threshold", {"model": "llmlingua-2", "context": "a", "rate": 0.5, "threshold": 0.5}, 422,
     "invalid_request", "not both"),
    ("threshold above one", {"model": "llmlingua-2", "context": "a", "threshold": 2}, 422, "invalid_request",
     "from 0 to 1"),
    ("top_k without query", {"model": "llmlingua-2", "context": "a", "top_k": 2}, 422, "invalid_request", "query"),
    ("too many force tokens", {"model": "llmlingua-2", "context": "a", "force_tokens": ["x"] * 101}, 413,
     "too_many_inputs", "limit is 100"),
    ("unknown model", {"model": "no-such-model", "context": "a"}, 404, "model_not_found", "no-such-model"),
    ("an embedder", {"model": "all-MiniLM-L6-v2", "context": "a"}, 422, "unsupported_output", "cannot compress"),
    ("a reranker without a query", {"model": "rerank", "context": "a"}, 422, "unsupported_output", "`query`"),
    ("a query without a reranker", {"model": "llmlingua-2", "context": "a", "query": "q", "top_k": 1}, 422,
     "unsupported_output", "reranker"),
    ("a query without a rule", {"model": "rerank", "context": "a", "query": "q"}, 422, "invalid_request", "top_k"),
    ("top_k zero", {"model": "rerank", "context": "a", "query": "q", "top_k": 0}, 422, "invalid_request", "positive"),
    ("too many contexts", {"model": "llmlingua-2", "contexts": ["a"] * (MAX_INPUTS + 1)}, 413, "too_many_inputs",
     f"limit is {MAX_INPUTS}"),
    ("too many windows", {"model": "llmlingua-2", "context": "word " * 511 * (MAX_INPUTS + 1)}, 413, "too_many_inputs", "windows"),
    ("too many characters", {"model": "llmlingua-2", "context": "x" * (8 * 512 * MAX_INPUTS + 1)}, 413,
     "input_too_large", "characters"),
    ("too many sentences", {"model": "rerank", "context": "A. " * (MAX_INPUTS + 1), "query": "q", "top_k": 1}, 413,
     "too_many_inputs", "sentences"),
    ("body too large", {"model": "llmlingua-2", "context": "word " * (BODY_LIMIT // 5 + 10)}, 413,
     "request_too_large", ""),
]


@pytest.mark.parametrize("name,body,status,kind,fragment", BAD, ids=[case[0] for case in BAD])
def test_bad_input_is_a_native_4xx_and_the_server_serves_on(served, name, body, status, kind, fragment):
    live, compressor, _ = served
    response = post(live, body)
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert set(error) == {"type", "message"} and error["type"] == kind and fragment in error["message"]
    assert str(compressor.parent) not in error["message"]  # no server paths
    ok = post(live, {"model": "llmlingua-2", "context": "still serving, thanks.", "rate": 0.5})
    assert ok.status_code == 200 and ok.json()["compressed"]


def test_models_list_the_compressor(served):
    live, _, _ = served
    models = {m["id"]: m for m in httpx.get(live.url + "/v1/models", timeout=10).json()["data"]}
    assert models["llmlingua-2"]["capabilities"] == ["extract"] and models["llmlingua-2"]["max_length"] == 512


# ---- the Python client ---------------------------------------------------------------------------
def test_client_compress_both_modes(served, package_answers):
    live, _, _ = served
    with ShoalClient(live.url, model="llmlingua-2", msgpack=False) as shoal:
        result = shoal.compress(SHORT, rate=0.5)
        assert result.compressed == package_answers[0]["compressed_prompt"] and result.results is None
        several = shoal.compress([SHORT, MARKS], rate=0.7, force_tokens=["\n"])
        assert several.compressed == package_answers[2]["compressed_prompt"]
        assert [r["compressed"] for r in several.results] == package_answers[2]["compressed_prompt_list"]
        pruned = shoal.compress(PASSAGE, model="rerank", query=QUERY, top_k=2, return_scores=True)
        assert sum(s["kept"] for s in pruned.sentences) == 2 and pruned.input_tokens > 0
        with pytest.raises(ShoalError) as error:
            shoal.compress("", rate=0.5)
        assert error.value.status == 422 and error.value.kind == "invalid_request"


async def test_async_client_compress(served):
    live, _, _ = served
    async with AsyncShoalClient(live.url, model="rerank") as shoal:
        result = await shoal.compress(PASSAGE, query=QUERY, threshold=0.0)
    assert result.compressed == PASSAGE.rstrip() or len(result.compressed) < len(PASSAGE)


def test_prompt_context_retrieves_reranks_and_compresses(served, tmp_path):
    """The agent-side flow: Chroma (embedding through Shoal) retrieves, Shoal reranks the hits,
    compresses the best, and the prompt is built from what is left."""
    import chromadb

    from connectors.chroma import ShoalEmbeddingFunction

    live, _, _ = served
    passages = [SHORT, MARKS, PASSAGE, LONG[:2000], "Rerankers read the query and a passage together.",
                "Compression keeps the words a small model marks as needed."]
    collection = chromadb.PersistentClient(path=str(tmp_path / "chroma")).create_collection(
        "docs", embedding_function=ShoalEmbeddingFunction(url=live.url, model="all-MiniLM-L6-v2"))
    collection.add(ids=[str(i) for i in range(len(passages))], documents=passages)
    question = "how do rerankers read a passage?"
    hits = collection.query(query_texts=[question], n_results=4)["documents"][0]
    with ShoalClient(live.url) as shoal:
        context = prompt_context(shoal, question, hits, reranker="rerank", compressor="llmlingua-2", top_n=2)
        ranked = shoal.score(question, hits, model="rerank", top_n=2).results
        expected = shoal.compress([hits[i] for i, _ in ranked], model="llmlingua-2", rate=0.5,
                                  force_tokens=["\n", "?"])
    assert context == expected.compressed and 0 < len(context) < sum(len(hits[i]) for i, _ in ranked)
    assert prompt_context(ShoalClient(live.url), question, [], reranker="rerank", compressor="llmlingua-2") == ""
