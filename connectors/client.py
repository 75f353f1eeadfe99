"""A small Python client for Shoal's native API, sync (`ShoalClient`) and async
(`AsyncShoalClient`). JSON or msgpack on the wire; retries on 429 and 503 honouring
`Retry-After`, and on connections that could not be made. Every request that names a model
carries it in the `X-Shoal-Model` header too, which is what a router in front of a fleet
(k8s/base/router) hashes on: it cannot read a msgpack body. No torch: httpx, msgspec, numpy."""

from __future__ import annotations

import abc
import asyncio
import email.utils
import time
import urllib.parse
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import httpx
import msgspec
import numpy as np

MSGPACK = "application/msgpack"
# The routing key of Shoal's router: the model's name, percent-encoded (UTF-8) when it is not
# plain ASCII; the router decodes it, so it hashes the same bytes as the body's "model".
MODEL_HEADER = "x-shoal-model"
RETRY_STATUSES = (429, 503)


class ShoalError(Exception):
    """An error answer from the gateway: `status`, `kind` (the error type) and `message`."""

    def __init__(self, status: int, kind: str, message: str):
        super().__init__(f"{status} {kind}: {message}")
        self.status, self.kind, self.message = status, kind, message


@dataclass(frozen=True)
class Encoding:
    model: str
    output: str
    # dense: float32 array [n, d]; sparse: [(indices int64, values float32)]; multivector: [float32 [k_i, d]]
    embeddings: Any
    input_tokens: int
    labels: list[list[str]] | None = None


@dataclass(frozen=True)
class Ranking:
    model: str
    results: list[tuple[int, float]]  # (document index, score), best first
    input_tokens: int


@dataclass(frozen=True)
class Compression:
    """A /v1/compress answer. `compressed` joins several contexts with a blank line; token
    counts are cl100k_base tokens (what the prompt costs), `input_tokens` the model's own.
    `results`: each context's {"compressed", "original_tokens", "kept_tokens", "sentences"?}
    when several were sent; `sentences`: with a query and return_scores, each sentence's
    {"text", "start", "end", "score", "kept"} (of the one context sent)."""

    model: str
    compressed: str
    original_tokens: int
    kept_tokens: int
    input_tokens: int
    results: list[dict] | None = None
    sentences: list[dict] | None = None


def _compression(body: dict) -> Compression:
    return Compression(body["model"], body["compressed"], body["original_tokens"], body["kept_tokens"],
                       body["usage"]["input_tokens"], body.get("results"), body.get("sentences"))


def _compress_body(model: str, context: str | Sequence[str], options: dict) -> dict:
    body: dict[str, Any] = {"model": model}
    if isinstance(context, str):
        body["context"] = context
    else:
        body["contexts"] = list(context)
    body.update({key: value for key, value in options.items() if value is not None and value is not False})
    return body


def _encode_body(model: str, inputs: Sequence[str], input_type: str, output: str, dimensions: int | None,
                 normalize: bool | None, truncate: bool, top_k: int | None, return_labels: bool) -> dict:
    if isinstance(inputs, str):
        raise TypeError("inputs must be a list of strings, not one string")
    body: dict[str, Any] = {"model": model, "inputs": list(inputs), "input_type": input_type, "output": output,
                            "truncate": truncate}
    for key, value in (("dimensions", dimensions), ("normalize", normalize), ("top_k", top_k)):
        if value is not None:
            body[key] = value
    if return_labels:
        body["return_labels"] = True
    return body


def _encoding(body: dict) -> Encoding:
    output, rows = body["output"], body["embeddings"]
    labels = None
    if output == "dense":
        embeddings: Any = np.asarray(rows, dtype=np.float32).reshape(len(rows), -1)
    elif output == "sparse":
        embeddings = [(np.asarray(r["indices"], dtype=np.int64), np.asarray(r["values"], dtype=np.float32))
                      for r in rows]
        if rows and rows[0].get("labels") is not None:
            labels = [r["labels"] for r in rows]
    else:
        embeddings = [np.asarray(r, dtype=np.float32).reshape(len(r), -1) for r in rows]
    return Encoding(body["model"], output, embeddings, body["usage"]["input_tokens"], labels)


def _classifications(body: dict) -> list[list[tuple[str, float]]]:
    return [[(label["label"], label["score"]) for label in r["labels"]] for r in body["results"]]


def _entities(body: dict) -> list[list[dict]]:
    return [r["entities"] for r in body["results"]]


def _ranking(body: dict) -> Ranking:
    return Ranking(body["model"], [(r["index"], r["score"]) for r in body["results"]], body["usage"]["input_tokens"])


def retry_after_seconds(response: httpx.Response, default: float) -> float:
    """`Retry-After` as seconds (a number or an HTTP date); `default` when absent or unreadable."""
    value = response.headers.get("retry-after")
    if value is None:
        return default
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
        return max(0.0, when.timestamp() - time.time())
    except (TypeError, ValueError):
        return default


def model_header(body: Any) -> str | None:
    """The `X-Shoal-Model` value for a request body: its "model", percent-encoded where it is
    not a plain name (non-ASCII, spaces, `%`, `,`); None when the body names no model."""
    model = body.get("model") if isinstance(body, dict) else None
    if not isinstance(model, str) or not model:
        return None
    return urllib.parse.quote(model, safe="/:@")


class _Base(abc.ABC):
    """Retries: a 429 or 503 (queue full, model loading, no replica up yet) and a connection
    that could not be made are tried again after the server's Retry-After (else an
    exponential backoff from `backoff`), each wait at most `max_wait`, until `retries` more
    tries (None: no count) or `retry_seconds` in all have passed. Against a fleet that scales
    from zero, set `retry_seconds` above its cold-start budget (README, "Scale from zero")."""

    def __init__(self, base_url: str = "http://127.0.0.1:8080", model: str | None = None, api_key: str | None = None,
                 timeout: float = 60.0, retries: int | None = 3, backoff: float = 0.5, max_wait: float = 30.0,
                 msgpack: bool = True, retry_seconds: float = 30.0):
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.api_key = api_key
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.max_wait = max_wait
        self.msgpack = msgpack
        self.retry_seconds = retry_seconds

    def _headers(self) -> dict[str, str]:
        headers = {"accept": MSGPACK if self.msgpack else "application/json"}
        if self.api_key:
            headers["authorization"] = f"Bearer {self.api_key}"
        return headers

    def _content(self, body: Any) -> tuple[bytes, str]:
        if self.msgpack:
            return msgspec.msgpack.encode(body), MSGPACK
        return msgspec.json.encode(body), "application/json"

    def _model(self, model: str | None) -> str:
        chosen = model or self.model
        if not chosen:
            raise ValueError("no model: pass model= here or when creating the client")
        return chosen

    @staticmethod
    def _decode(response: httpx.Response) -> Any:
        kind = response.headers.get("content-type", "").split(";")[0].strip()
        if kind == MSGPACK:
            return msgspec.msgpack.decode(response.content)
        return msgspec.json.decode(response.content) if response.content else None

    def _result(self, response: httpx.Response) -> Any:
        if response.status_code < 400:
            return self._decode(response)
        try:
            error = self._decode(response)["error"]
            kind, message = error.get("type", "error"), error.get("message", "")
        except Exception:  # not our error shape (a proxy in between)
            kind, message = "http_error", response.text[:500]
        raise ShoalError(response.status_code, kind, message)

    def _wait(self, attempt: int, response: httpx.Response | None, started: float) -> float | None:
        """Seconds to wait before the next try, or None to stop retrying."""
        if self.retries is not None and attempt >= self.retries:
            return None
        default = self.backoff * 2 ** attempt
        wait = min(retry_after_seconds(response, default) if response is not None else default, self.max_wait)
        if time.monotonic() + wait - started > self.retry_seconds:
            return None
        return wait

    def _prepare(self, body: Any) -> tuple[bytes | None, dict[str, str]]:
        content, kind = self._content(body) if body is not None else (None, None)
        headers = self._headers()
        if kind:
            headers["content-type"] = kind
        header = model_header(body)
        if header is not None:
            headers[MODEL_HEADER] = header
        return content, headers

    # Each API call is built once, here. `_call` sends it: the sync client returns the parsed
    # answer, the async client an awaitable of it (so `await shoal.encode(...)` there).
    @abc.abstractmethod
    def _call(self, method: str, path: str, body: Any, parse: Callable[[Any], Any]) -> Any: ...

    def encode(self, inputs: Sequence[str], model: str | None = None, input_type: str = "document",
               output: str = "dense", dimensions: int | None = None, normalize: bool | None = None,
               truncate: bool = True, top_k: int | None = None, return_labels: bool = False) -> Encoding:
        body = _encode_body(self._model(model), inputs, input_type, output, dimensions, normalize, truncate, top_k,
                            return_labels)
        return self._call("POST", "/v1/encode", body, _encoding)

    def score(self, query: str, documents: Sequence[str], model: str | None = None,
              top_n: int | None = None) -> Ranking:
        body: dict[str, Any] = {"model": self._model(model), "query": query, "documents": list(documents)}
        if top_n is not None:
            body["top_n"] = top_n
        return self._call("POST", "/v1/score", body, _ranking)

    def classify(self, inputs: Sequence[str], model: str | None = None, *, labels: Sequence[str] | None = None,
                 multi_label: bool | None = None, hypothesis_template: str | None = None,
                 threshold: float | None = None) -> list[list[tuple[str, float]]]:
        """(label, score) pairs per input, best first. `labels` (and `multi_label`,
        `threshold`, `hypothesis_template`) for models that take them at request time
        (zero-shot NLI and GLiClass models); fixed-label classifiers use their own."""
        options = {"labels": None if labels is None else list(labels), "multi_label": multi_label,
                   "hypothesis_template": hypothesis_template, "threshold": threshold}
        body = {"model": self._model(model), "inputs": list(inputs),
                **{key: value for key, value in options.items() if value is not None}}
        return self._call("POST", "/v1/classify", body, _classifications)

    def extract(self, inputs: Sequence[str], model: str | None = None, *, labels: Sequence[str] | None = None,
                threshold: float | None = None, flat_ner: bool | None = None,
                multi_label: bool | None = None) -> list[list[dict]]:
        """Entities per input: {"label", "text", "start", "end", "score"} with character
        offsets. `labels` (and `threshold`, `flat_ner`, `multi_label`) for GLiNER models."""
        options = {"labels": None if labels is None else list(labels), "threshold": threshold, "flat_ner": flat_ner,
                   "multi_label": multi_label}
        body = {"model": self._model(model), "inputs": list(inputs),
                **{key: value for key, value in options.items() if value is not None}}
        return self._call("POST", "/v1/extract", body, _entities)

    def compress(self, context: str | Sequence[str], model: str | None = None, *, rate: float | None = None,
                 threshold: float | None = None, force_tokens: Sequence[str] | None = None, query: str | None = None,
                 top_k: int | None = None, return_scores: bool = False) -> Compression:
        """Shorter context for an LLM prompt (/v1/compress). With a token classifier (an
        LLMLingua-2 model): keep `rate` of the tokens (0.5 by default) or the words whose keep
        probability reaches `threshold`, `force_tokens` always. With a reranker and a `query`:
        keep the sentences scored at or above `threshold`, or the `top_k` best, in order.
        `context` is one text or a list (each compressed on its own). See `prompt_context`."""
        body = _compress_body(self._model(model), context, {
            "rate": rate, "threshold": threshold, "force_tokens": None if force_tokens is None else list(force_tokens),
            "query": query, "top_k": top_k, "return_scores": return_scores})
        return self._call("POST", "/v1/compress", body, _compression)

    def models(self) -> list[dict]:
        return self._call("GET", "/v1/models", None, lambda body: body["data"])


class ShoalClient(_Base):
    """Synchronous client. `with ShoalClient(url, model="all-MiniLM-L6-v2") as shoal: shoal.embed([...])`."""

    def __init__(self, base_url: str = "http://127.0.0.1:8080", *, transport: httpx.BaseTransport | None = None,
                 **options: Any):
        super().__init__(base_url, **options)
        self._transport = transport
        self._http: httpx.Client | None = None  # opened on first use: constructing is free

    @property
    def http(self) -> httpx.Client:
        if self._http is None:
            self._http = httpx.Client(base_url=self.base_url, timeout=self.timeout, transport=self._transport)
        return self._http

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None

    def __enter__(self) -> "ShoalClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def request(self, method: str, path: str, body: Any = None) -> Any:
        content, headers = self._prepare(body)
        attempt, started = 0, time.monotonic()
        while True:
            try:
                response = self.http.request(method, path, content=content, headers=headers)
            except (httpx.ConnectError, httpx.RemoteProtocolError):
                wait = self._wait(attempt, None, started)
                if wait is None:
                    raise
            else:
                wait = self._wait(attempt, response, started) if response.status_code in RETRY_STATUSES else None
                if wait is None:
                    return self._result(response)
            time.sleep(wait)
            attempt += 1

    def _call(self, method: str, path: str, body: Any, parse: Callable[[Any], Any]) -> Any:
        return parse(self.request(method, path, body))

    def embed(self, inputs: Sequence[str], model: str | None = None, **options: Any) -> np.ndarray:
        """Dense vectors, float32 [n, d]."""
        return self.encode(inputs, model, output="dense", **options).embeddings


class AsyncShoalClient(_Base):
    """Asynchronous client with the same methods as `ShoalClient`, awaited:
    `async with AsyncShoalClient(url, model=...) as shoal: await shoal.embed([...])`."""

    def __init__(self, base_url: str = "http://127.0.0.1:8080", *,
                 transport: httpx.AsyncBaseTransport | None = None, **options: Any):
        super().__init__(base_url, **options)
        self._transport = transport
        self._http: httpx.AsyncClient | None = None

    @property
    def http(self) -> httpx.AsyncClient:
        if self._http is None:
            self._http = httpx.AsyncClient(base_url=self.base_url, timeout=self.timeout, transport=self._transport)
        return self._http

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    async def __aenter__(self) -> "AsyncShoalClient":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()

    async def request(self, method: str, path: str, body: Any = None) -> Any:
        content, headers = self._prepare(body)
        attempt, started = 0, time.monotonic()
        while True:
            try:
                response = await self.http.request(method, path, content=content, headers=headers)
            except (httpx.ConnectError, httpx.RemoteProtocolError):
                wait = self._wait(attempt, None, started)
                if wait is None:
                    raise
            else:
                wait = self._wait(attempt, response, started) if response.status_code in RETRY_STATUSES else None
                if wait is None:
                    return self._result(response)
            await asyncio.sleep(wait)
            attempt += 1

    async def _call(self, method: str, path: str, body: Any, parse: Callable[[Any], Any]) -> Any:
        return parse(await self.request(method, path, body))

    async def embed(self, inputs: Sequence[str], model: str | None = None, **options: Any) -> np.ndarray:
        """Dense vectors, float32 [n, d]."""
        return (await self.encode(inputs, model, output="dense", **options)).embeddings


def prompt_context(shoal: ShoalClient, question: str, passages: Sequence[str], *, reranker: str, compressor: str,
                   top_n: int = 5, rate: float = 0.5, force_tokens: Sequence[str] = ("\n", "?")) -> str:
    """An agent's context for `question`, from passages it retrieved: rerank them, keep the
    `top_n` best, compress those (`rate` of their tokens) and join them. The whole flow,
    with Chroma (Shoal embeds through connectors.chroma's ShoalEmbeddingFunction):

        with ShoalClient("http://127.0.0.1:8080") as shoal:
            hits = collection.query(query_texts=[question], n_results=20)["documents"][0]
            context = prompt_context(shoal, question, hits, reranker="rerank", compressor="llmlingua-2")
            prompt = f"Answer from this context.\\n\\n{context}\\n\\nQuestion: {question}"

    With Weaviate the hits are `[o.properties["text"] for o in collection.query.near_text(question,
    limit=20).objects]`. A reranker alone can cut instead: `shoal.compress(passage,
    model=reranker, query=question, top_k=3)` keeps a passage's three most relevant
    sentences (`return_scores=True` scores every sentence, to highlight instead)."""
    if not passages:
        return ""
    ranked = shoal.score(question, list(passages), model=reranker, top_n=top_n)
    best = [passages[index] for index, _ in ranked.results]
    return shoal.compress(best, model=compressor, rate=rate, force_tokens=list(force_tokens)).compressed
