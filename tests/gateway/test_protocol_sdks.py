"""The real OpenAI, Cohere and Ollama Python SDKs against the gateway, with their default
encodings (the OpenAI SDK asks for base64 and decodes it itself), values checked against
sentence-transformers and the rerank scores against its CrossEncoder (tests/references.py),
and their error paths: each SDK must read our error bodies."""

from __future__ import annotations

import pytest

from engine import Engine, EngineConfig
from tests import references
from tests.conftest import LiveServer

MODEL = "all-MiniLM-L6-v2"
TEXTS = ["The river runs through the valley.", "Coffee is brewed from roasted beans.",
         "Vector databases index embeddings for retrieval."]
QUERY = "mountain river coffee"
DOCUMENTS = ["a river in the mountains", "espresso and coffee beans", "gpu memory and batch size"]


@pytest.fixture(scope="module")
def live(task_models, minilm_spec):
    specs = [minilm_spec] + task_models.specs(("rerank",))
    with LiveServer(Engine(specs, EngineConfig(device="cpu", dtype="float32"))) as server:
        yield server


@pytest.fixture(scope="module")
def reference(minilm_reference):
    return minilm_reference.encode(TEXTS, normalize_embeddings=True)


@pytest.fixture(scope="module")
def rerank_scores(task_models):
    """CrossEncoder scores of DOCUMENTS against QUERY, in document order."""
    return references.rerank_scores(task_models.folder("rerank"), QUERY, DOCUMENTS)


_close = references.assert_vectors_close


def test_openai_sdk_default_base64_and_float(live, minilm_spec, reference):
    import openai

    client = openai.OpenAI(base_url=live.url + "/v1", api_key="dummy", max_retries=0)
    response = client.embeddings.create(model=MODEL, input=TEXTS)  # the SDK's default: base64
    assert [d.index for d in response.data] == [0, 1, 2] and response.usage.prompt_tokens > 0
    _close([d.embedding for d in response.data], reference)
    floats = client.embeddings.create(model=MODEL, input=TEXTS[0], encoding_format="float", dimensions=64)
    _close([floats.data[0].embedding], references.dense(minilm_spec.path, TEXTS[:1], dimensions=64))
    raw = client.embeddings.with_raw_response.create(model=MODEL, input=TEXTS)
    assert raw.headers["x-ratelimit-remaining-requests"] and raw.headers["x-ratelimit-reset-tokens"] == "1s"
    with pytest.raises(openai.NotFoundError) as caught:
        client.embeddings.create(model="text-embedding-3-small", input="a")
    assert "not served" in caught.value.message
    # the SDK reads OpenAI's own error types and a string code
    assert (caught.value.type, caught.value.code) == ("invalid_request_error", "model_not_found")
    with pytest.raises(openai.UnprocessableEntityError) as caught:
        client.embeddings.create(model=MODEL, input=[])
    assert caught.value.type == "invalid_request_error" and isinstance(caught.value.code, str)


async def test_openai_async_sdk(live, reference):
    import openai

    client = openai.AsyncOpenAI(base_url=live.url + "/v1", api_key="dummy", max_retries=0)
    response = await client.embeddings.create(model="sentence-transformers/all-MiniLM-L6-v2", input=TEXTS)
    _close([d.embedding for d in response.data], reference)
    await client.close()


def test_cohere_sdk_embed_and_rerank(live, minilm_spec, reference, rerank_scores):
    import cohere

    client = cohere.ClientV2(api_key="dummy", base_url=live.url)
    response = client.embed(model=MODEL, texts=TEXTS, input_type="search_document", embedding_types=["float"])
    _close(response.embeddings.float_, reference)
    query = client.embed(model=MODEL, texts=[QUERY], input_type="search_query", embedding_types=["float"],
                         output_dimension=128)
    _close(query.embeddings.float_, references.dense(minilm_spec.path, [QUERY], input_type="query", dimensions=128))
    ranked = client.rerank(model="rerank", query=QUERY, documents=DOCUMENTS, top_n=2)
    references.assert_ranked([{"index": r.index, "score": r.relevance_score} for r in ranked.results], rerank_scores,
                             top_n=2)
    with pytest.raises(cohere.errors.NotFoundError) as caught:
        client.embed(model="embed-v4.0", texts=["a"], input_type="search_document", embedding_types=["float"])
    assert "not served" in caught.value.body["message"]
    with pytest.raises(cohere.errors.UnprocessableEntityError):
        client.rerank(model=MODEL, query=QUERY, documents=DOCUMENTS)


async def test_cohere_async_sdk(live, reference):
    import cohere

    client = cohere.AsyncClientV2(api_key="dummy", base_url=live.url)
    response = await client.embed(model=MODEL, texts=TEXTS, input_type="search_document", embedding_types=["float"])
    _close(response.embeddings.float_, reference)


def test_ollama_sdk_embed_and_list(live, minilm_spec, reference):
    import ollama

    client = ollama.Client(host=live.url)
    response = client.embed(model=MODEL, input=TEXTS)
    _close(response.embeddings, reference)
    assert response.prompt_eval_count > 0
    one = client.embed(model=MODEL, input=TEXTS[0], dimensions=32)
    _close(one.embeddings, references.dense(minilm_spec.path, TEXTS[:1], dimensions=32))
    listed = client.list()
    assert [m.model for m in listed.models] == [MODEL, "rerank"]
    assert all(m.size > 0 and m.modified_at is not None for m in listed.models)
    with pytest.raises(ollama.ResponseError) as caught:
        client.embed(model="nomic-embed-text", input="a")
    assert caught.value.status_code == 404 and "not served" in caught.value.error


async def test_ollama_async_sdk(live, reference):
    import ollama

    response = await ollama.AsyncClient(host=live.url).embed(model=MODEL, input=TEXTS)
    _close(response.embeddings, reference)


def test_sdks_with_api_keys(minilm_spec, minilm_reference):
    """With keys configured, the SDKs' bearer must match one; a wrong key is a 401 the SDK reads."""
    import cohere
    import openai

    from gateway.app import GatewaySettings

    engine = Engine([minilm_spec], EngineConfig(device="cpu", dtype="float32"))
    with LiveServer(engine, GatewaySettings(api_keys=("secret-key",))) as server:
        good = openai.OpenAI(base_url=server.url + "/v1", api_key="secret-key", max_retries=0)
        _close([good.embeddings.create(model=MODEL, input="a").data[0].embedding],
               minilm_reference.encode(["a"], normalize_embeddings=True))
        with pytest.raises(openai.AuthenticationError) as caught:
            openai.OpenAI(base_url=server.url + "/v1", api_key="wrong", max_retries=0).embeddings.create(
                model=MODEL, input="a")
        assert (caught.value.type, caught.value.code) == ("authentication_error", "unauthorized")
        co = cohere.ClientV2(api_key="secret-key", base_url=server.url)
        _close(co.embed(model=MODEL, texts=["a"], input_type="search_query", embedding_types=["float"]).embeddings.float_,
               minilm_reference.encode_query(["a"], normalize_embeddings=True))
        with pytest.raises(cohere.errors.UnauthorizedError):
            cohere.ClientV2(api_key="wrong", base_url=server.url).embed(
                model=MODEL, texts=["a"], input_type="search_query", embedding_types=["float"])
