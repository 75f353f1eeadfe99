"""Every request of Shoal's client and connectors that names a model carries it in the
`X-Shoal-Model` header too: the router of a fleet (k8s/base/router/haproxy.cfg) hashes on
it, and cannot read a msgpack body. Checked on the wire: the requests pass through a
recording proxy on loopback on their way to the real gateway, which still answers them.
(tests/deploy/test_router.py shows the header routing msgpack through the real HAProxy.)"""

from __future__ import annotations

import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import msgspec
import pytest

from connectors import AsyncShoalClient, ShoalClient, ShoalError
from connectors.client import MODEL_HEADER, model_header
from tests import references

MODEL = "all-MiniLM-L6-v2"
TEXTS = ["Salmon swim upstream to spawn.", "A shoal of fish turns at once."]


class RecordingProxy:
    """A loopback HTTP server that records each request (method, path, lower-cased headers,
    body) and forwards it to `upstream`, answering with the upstream's answer."""

    def __init__(self, upstream: str):
        self.requests: list[tuple[str, str, dict[str, str], bytes]] = []
        proxy = self
        forward = httpx.Client(base_url=upstream, timeout=60)

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _relay(self):
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                headers = {k.lower(): v for k, v in self.headers.items()}
                proxy.requests.append((self.command, self.path, headers, body))
                sent = {k: v for k, v in headers.items() if k not in ("host", "content-length", "connection")}
                answer = forward.request(self.command, self.path, content=body or None, headers=sent)
                self.send_response(answer.status_code)
                for name in ("content-type", "retry-after"):
                    if name in answer.headers:
                        self.send_header(name, answer.headers[name])
                self.send_header("content-length", str(len(answer.content)))
                self.end_headers()
                self.wfile.write(answer.content)

            do_GET = do_POST = _relay

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._forward = forward
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "RecordingProxy":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=10)
        self._forward.close()

    def posted(self) -> list[tuple[str, str | None, object]]:
        """(path, X-Shoal-Model header, decoded body) of every request that had a body."""
        out = []
        for _, path, headers, body in self.requests:
            if not body:
                continue
            kind = headers.get("content-type", "")
            decoded = msgspec.msgpack.decode(body) if "msgpack" in kind else msgspec.json.decode(body)
            out.append((path, headers.get(MODEL_HEADER), decoded))
        return out


@pytest.fixture
def proxy(task_server):
    with RecordingProxy(task_server.url) as recording:
        yield recording


def assert_every_body_names_its_model_in_the_header(proxy: RecordingProxy, expected_calls: int) -> None:
    posted = proxy.posted()
    assert len(posted) == expected_calls, posted
    for path, header, body in posted:
        assert header is not None, f"{path}: no {MODEL_HEADER} header"
        assert urllib.parse.unquote(header) == body["model"], (path, header, body["model"])


@pytest.mark.parametrize("msgpack", [True, False])
def test_sync_client_sends_the_model_header(proxy, minilm_reference, msgpack):
    with ShoalClient(proxy.url, model=MODEL, msgpack=msgpack) as shoal:
        references.assert_vectors_close(shoal.embed(TEXTS), minilm_reference.encode(TEXTS, normalize_embeddings=True))
        shoal.encode(TEXTS, model="splade", output="sparse")
        shoal.encode(TEXTS[:1], model="colbert", output="multivector", input_type="query")
        shoal.score("fish", TEXTS, model="rerank")
        models = shoal.models()
    assert {m["id"] for m in models} >= {MODEL, "rerank"}
    assert_every_body_names_its_model_in_the_header(proxy, 4)
    (get,) = [r for r in proxy.requests if r[0] == "GET"]
    assert MODEL_HEADER not in get[2], "a request that names no model carries no header"


async def test_async_client_sends_the_model_header(proxy):
    async with AsyncShoalClient(proxy.url, model=MODEL) as shoal:
        await shoal.embed(TEXTS, input_type="query")
        await shoal.score("fish", TEXTS, model="rerank", top_n=1)
    assert_every_body_names_its_model_in_the_header(proxy, 2)


def test_names_that_are_not_plain_ascii_are_percent_encoded(proxy):
    assert model_header({"model": MODEL}) == MODEL
    assert model_header({"model": "sentence-transformers/all-MiniLM-L6-v2"}) == "sentence-transformers/all-MiniLM-L6-v2"
    assert model_header({"model": "modèle, 100%"}) == "mod%C3%A8le%2C%20100%25"
    assert model_header({"inputs": ["no model"]}) is None and model_header(None) is None
    with ShoalClient(proxy.url, msgpack=True) as shoal, pytest.raises(ShoalError) as caught:
        shoal.embed(["x"], model="modèle, 100%")
    assert caught.value.status == 404 and "modèle, 100%" in caught.value.message
    assert_every_body_names_its_model_in_the_header(proxy, 1)


def test_chroma_embedding_functions_send_the_model_header(proxy, minilm_reference):
    from connectors.chroma import ShoalEmbeddingFunction, ShoalSparseEmbeddingFunction

    dense = ShoalEmbeddingFunction(url=proxy.url, model=MODEL)
    references.assert_vectors_close(dense(TEXTS), minilm_reference.encode(TEXTS, normalize_embeddings=True))
    dense.embed_query(TEXTS[:1])
    sparse = ShoalSparseEmbeddingFunction(url=proxy.url, model="splade", top_k=8)
    sparse(TEXTS)
    assert_every_body_names_its_model_in_the_header(proxy, 3)


def test_weaviate_vectorizer_sends_the_model_header(proxy):
    from connectors.weaviate import ShoalVectorizer

    dense = ShoalVectorizer(proxy.url, MODEL, batch_size=1)
    colbert = ShoalVectorizer(proxy.url, "colbert", multivector=True)
    try:
        assert len(dense.documents(TEXTS)) == 2
        dense.query("fish")
        colbert.query("which fish")
    finally:
        dense.close()
        colbert.close()
    assert_every_body_names_its_model_in_the_header(proxy, 4)
