"""The public engine API: an async Engine that the gateway, tests and benchmarks share.

Requests are tokenised on a thread pool (off the event loop), queued per model, batched by
token budget and run by one device worker; forward passes run on a single device thread so
the event loop keeps accepting and tokenising while the device computes."""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any, Sequence

import numpy as np
import torch

from .attention import select_backend
from .device import resolve_device, resolve_dtype
from .errors import (DeadlineExceeded, about_model, EngineError, InputTooLarge, InputTooLong, InvalidInput, ModelLoadError,
                     ModelNotFound, NotReady, TooManyInputs, UnsupportedOutput)
from .colbert import ColbertTokenizer, maxsim
from .entities import Entity, entities, softmax
from .fallback import BACKEND_NAME as FALLBACK_BACKEND
from .fallback import FallbackModel
from .heads import finish_dense
from .models import find_architecture, native_family
from .pool import ModelPool
from .scheduler import Batch, Job, Scheduler
from .served import ServedModel
from .spec import INPUT_TYPES, POOLING_MODES, ModelSpec, spec_from_folder
from .tokenize import TOKENIZE_MAX_CHARS, TextTokenizer, Token, Tokenized

log = logging.getLogger("shoal.engine")

OUTPUTS = ("dense", "sparse", "multivector")
# Large enough that a vector database's bulk import (Weaviate sends one object per
# request and does not retry a 429) queues instead of failing; the deadline bounds the wait.
DEFAULT_QUEUE_TOKENS = 2**20
QWEN3_RERANK_PREFIX = ("<|im_start|>system\nJudge whether the Document meets the requirements based on the Query "
                       "and the Instruct provided. Note that the answer can only be \"yes\" or \"no\".<|im_end|>\n"
                       "<|im_start|>user\n")
QWEN3_RERANK_SUFFIX = "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
DEFAULT_RERANK_INSTRUCTION = "Given a web search query, retrieve relevant passages that answer the query"


class EngineObserver:
    """Hooks for metrics. The engine never imports a metrics library; the gateway plugs one in."""

    def batch_done(self, model: str, sequences: int, tokens: int, seconds: float) -> None: ...
    def rejected(self, reason: str) -> None: ...
    def model_loaded(self, model: str, seconds: float, source: str = "disk") -> None: ...
    def model_load_failed(self, model: str) -> None: ...
    def model_evicted(self, model: str, reason: str) -> None: ...
    def pool_lookup(self, result: str) -> None: ...  # "hit" | "host" | "miss"
    def load_waited(self, model: str, seconds: float) -> None: ...


@dataclass(frozen=True)
class EngineConfig:
    device: str = "auto"
    dtype: str = "auto"
    max_batch_tokens: int | None = None  # default: 16384 on CUDA, 4096 on CPU
    max_queue_tokens: int | None = None  # default: 2**20 tokens (minutes of CPU work, seconds on a GPU)
    max_inputs_per_request: int = 2048
    attention: str | None = None  # force a backend (tests)
    memory_budget: int | None = None  # device bytes for models; None: a safe fraction of free memory
    host_cache: int | None = None  # host bytes for evicted models' weights; None: same as the budget
    swap_age_seconds: float = 0.1  # how long a cold model's request may wait while resident models have work
    default_deadline_seconds: float | None = 120.0  # for requests that set none; None: no deadline
    load_timeout_seconds: float = 120.0  # how long an operator's load waits for room and for the load
    tokenizer_threads: int = max(1, min(4, (os.cpu_count() or 2)))


@dataclass(frozen=True)
class Encoded:
    output: str
    # dense: [n, d] float32; sparse: [(indices, values)] per input; multivector: [k_i, d] per input
    embeddings: Any
    input_tokens: int
    labels: list[list[str]] | None = None  # sparse, on request: the vocabulary token of each index


@dataclass(frozen=True)
class Scored:
    scores: list[float]  # one per document, in document order
    input_tokens: int


@dataclass(frozen=True)
class Classified:
    labels: tuple[str, ...]
    probabilities: np.ndarray  # [n, labels]
    input_tokens: int


@dataclass(frozen=True)
class Extracted:
    entities: list[list[Entity]]  # per input
    input_tokens: int


@dataclass(frozen=True)
class ModelStatus:
    name: str
    source: str | None
    state: str
    bytes: int
    capabilities: tuple[str, ...]
    backend: str
    dimension: int
    max_length: int
    loads: int
    evictions: int
    last_used: float | None
    error: str | None
    pinned: bool


def _counted(method):
    """A public call: refused once the engine stops accepting, and counted while it runs,
    so a drain ends the moment the last one is answered."""

    @functools.wraps(method)
    async def call(self: "Engine", *args, **kwargs):
        if not self._accepting:
            raise NotReady("the server is shutting down")
        self._active += 1
        self._idle.clear()
        try:
            return await method(self, *args, **kwargs)
        finally:
            self._active -= 1
            if not self._active:
                self._idle.set()

    return call


class Engine:
    def __init__(self, specs: Sequence[ModelSpec], config: EngineConfig = EngineConfig(),
                 observer: EngineObserver | None = None):
        names = [spec.name for spec in specs]
        if len(set(names)) != len(names):
            raise ValueError(f"model names must be unique: {names}")
        self.config = config
        self.observer = observer or EngineObserver()
        self.device = resolve_device(config.device)
        self.dtype = resolve_dtype(config.dtype, self.device)
        self.attention_name, self._attention = select_backend(self.device, config.attention)
        default_budget = 16384 if self.device.type == "cuda" else 4096
        self.max_batch_tokens = config.max_batch_tokens or default_budget
        self.scheduler = Scheduler(self.max_batch_tokens, config.max_queue_tokens or DEFAULT_QUEUE_TOKENS)
        self.specs = {spec.name: spec for spec in specs}
        self._aliases = {spec.source: spec.name for spec in specs if spec.source and spec.source not in self.specs}
        self._tokenizers: dict[tuple[str, str], Any] = {}
        self._device_thread = self._load_thread = self._tokenize_threads = None  # made by start()
        self.element_size = torch.empty((), dtype=self.dtype).element_size()
        self.memory_budget = config.memory_budget or default_memory_budget(self.device)
        host_cache = config.host_cache if config.host_cache is not None else self.memory_budget
        self.pool = ModelPool(list(specs), self._load_model, self.element_size, self.memory_budget, host_cache,
                              self.observer, has_work=lambda name: self.queue_depth().get(name, (0, 0))[0] > 0)
        # a load that finished (an operator's, a preload's) may unblock queued work
        self.pool.on_change = lambda: self._work.set()
        self._swaps: set[asyncio.Task] = set()
        self._work = asyncio.Event()
        self._worker: asyncio.Task | None = None
        self._accepting = False
        self._active = 0  # public calls in progress (tokenising, queued or on the device)
        self._idle = asyncio.Event()
        self._idle.set()

    def set_observer(self, observer: EngineObserver) -> None:
        self.observer = self.pool.observer = observer

    # ---- lifecycle -------------------------------------------------------------------
    async def start(self) -> None:
        self._device_thread = ThreadPoolExecutor(1, thread_name_prefix="shoal-device")
        self._load_thread = ThreadPoolExecutor(1, thread_name_prefix="shoal-load")
        self._tokenize_threads = ThreadPoolExecutor(self.config.tokenizer_threads, thread_name_prefix="shoal-tokenize")
        self.pool.executor = self._load_thread
        self._work = asyncio.Event()
        self._accepting = True
        self._worker = asyncio.create_task(self._run(), name="shoal-device-worker")
        log.info("engine started", extra={"device": str(self.device), "dtype": str(self.dtype).removeprefix("torch."),
                                          "attention": self.attention_name, "max_batch_tokens": self.max_batch_tokens,
                                          "models": list(self.specs)})

    async def stop(self, drain_seconds: float = 30.0) -> None:
        """Stop accepting, let calls in progress finish (at most `drain_seconds`, and no
        longer than they take), then stop the worker. Anything still queued then is answered
        with NotReady: nothing accepted goes unanswered."""
        self._accepting = False
        if self._active:
            try:
                await asyncio.wait_for(self._idle.wait(), drain_seconds)
            except asyncio.TimeoutError:
                log.warning("drain time is up", extra={"calls": self._active, "seconds": drain_seconds})
        for task in self._swaps:
            task.cancel()
        if self._worker:
            self._worker.cancel()
            try:
                await self._worker
            except asyncio.CancelledError:
                pass
        stopped = NotReady("the server stopped before this request was processed")
        for queue in list(self.scheduler.queues.values()):
            for job in list(queue.jobs):
                self.scheduler.fail(job, stopped)
        for executor in (self._device_thread, self._load_thread, self._tokenize_threads):
            executor.shutdown(wait=False, cancel_futures=True)

    @property
    def ready(self) -> bool:
        return self._accepting and self._worker is not None and not self._worker.done()

    def can_serve(self) -> bool:
        """Whether at least one configured model can serve: not every one has failed. A
        failed model counts again once a load succeeds (an operator's, after a fix)."""
        return any(entry.state != "failed" for entry in self.pool.entries.values())

    # ---- public API ------------------------------------------------------------------
    def resolve(self, model: str) -> ModelSpec:
        name = model if model in self.specs else self._aliases.get(model)
        if name is None:
            raise ModelNotFound(f"model {model!r} is not served here; known models: {sorted(self.specs)}")
        return self.specs[name]

    @_counted
    async def encode(self, model: str, texts: Sequence[str], input_type: str = "document", output: str = "dense",
                     dimensions: int | None = None, normalize: bool | None = None, truncate: bool = True,
                     deadline: float | None = None, top_k: int | None = None,
                     return_labels: bool = False, pooling: str | None = None) -> Encoded:
        """Embed texts. dense: one vector each (Matryoshka `dimensions`, `normalize`, and
        `pooling` to override the model's own, e.g. for Weaviate's pooling_strategy);
        sparse: SPLADE (index, value) pairs, optionally the `top_k` largest, with
        vocabulary `labels`; multivector: ColBERT token vectors (query or document)."""
        spec = self.resolve(model)
        self._check_inputs(texts)
        if input_type not in INPUT_TYPES:
            raise InvalidInput(f"input_type must be one of {INPUT_TYPES}, got {input_type!r}")
        if output not in OUTPUTS:
            raise InvalidInput(f"output must be one of {OUTPUTS}, got {output!r}")
        self._require(spec, output)
        texts = list(texts)
        if output == "multivector":
            items = await self._tokenize(self._colbert_tokenizer(spec).encode, texts, input_type == "query", truncate)
            vectors = await self._submit(spec.name, f"multivector_{input_type}", items, list, deadline)
            return Encoded(output, vectors, _tokens(items))
        items = await self._tokenize(self._text_tokenizer(spec).encode, _prompted(spec, texts, input_type), truncate)
        if output == "sparse":
            if top_k is not None and not (isinstance(top_k, int) and top_k > 0):
                raise InvalidInput("top_k must be a positive integer")
            pairs = await self._submit(spec.name, "sparse", items, list, deadline)
            pairs = [_top_k(indices, values, top_k) for indices, values in pairs]
            labels = None
            if return_labels:
                tokenizer = self._text_tokenizer(spec)
                labels = [[tokenizer.id_to_token(int(i)) for i in indices] for indices, _ in pairs]
            return Encoded(output, pairs, _tokens(items), labels)
        if dimensions is not None and not (isinstance(dimensions, int) and 0 < dimensions <= spec.dimension):
            raise InvalidInput(f"dimensions must be an integer from 1 to {spec.dimension} for model {spec.name!r}")
        normalize = spec.normalize if normalize is None else normalize
        if pooling is not None and pooling not in POOLING_MODES:
            raise InvalidInput(f"pooling must be one of {POOLING_MODES}, got {pooling!r}")
        kind = "embed" if pooling in (None, spec.pooling) else f"embed_{pooling}"
        vectors = await self._submit(spec.name, kind, items, np.stack, deadline)
        return Encoded(output, finish_dense(vectors, dimensions, normalize), _tokens(items))

    @_counted
    async def score(self, model: str, query: str, documents: Sequence[str], raw_scores: bool = False,
                    truncate: bool = True, deadline: float | None = None) -> Scored:
        """Relevance of each document to the query, in document order: cross-encoders
        (sigmoid of the logit unless `raw_scores`), causal rerankers (P(yes)), and ColBERT
        models (MaxSim over normalised token vectors)."""
        if not isinstance(query, str) or not query:
            raise InvalidInput("query must be a non-empty string")
        self._check_inputs(documents)
        return await self._score_pairs(model, [(query, document) for document in documents], raw_scores, truncate,
                                       deadline)

    @_counted
    async def score_pairs(self, model: str, pairs: Sequence[tuple[str, str]], raw_scores: bool = False,
                          truncate: bool = True, deadline: float | None = None) -> Scored:
        """`score` for (query, document) pairs that need not share a query (TEI's /predict),
        computed as one request."""
        if not isinstance(pairs, (list, tuple)) or not pairs:
            raise InvalidInput("pairs must be a non-empty list of (text, text) pairs")
        if len(pairs) > self.config.max_inputs_per_request:
            raise TooManyInputs(f"{len(pairs)} pairs in one request; the limit is {self.config.max_inputs_per_request}")
        if not all(isinstance(pair, (list, tuple)) and len(pair) == 2 for pair in pairs):
            raise InvalidInput("each pair must hold two texts")
        self._check_inputs([text for pair in pairs for text in pair], limit=2 * len(pairs))
        return await self._score_pairs(model, [tuple(pair) for pair in pairs], raw_scores, truncate, deadline)

    async def _score_pairs(self, model: str, pairs: list[tuple[str, str]], raw_scores: bool, truncate: bool,
                           deadline: float | None) -> Scored:
        spec = self.resolve(model)
        self._require(spec, "score")
        if spec.task == "colbert":
            colbert = self._colbert_tokenizer(spec)
            queries = list(dict.fromkeys(query for query, _ in pairs))  # each distinct query once
            query_items, document_items = await asyncio.gather(
                self._tokenize(colbert.encode, queries, True, truncate),
                self._tokenize(colbert.encode, [document for _, document in pairs], False, truncate))
            query_vectors, document_vectors = await asyncio.gather(
                self._submit(spec.name, "multivector_query", query_items, list, deadline),
                self._submit(spec.name, "multivector_document", document_items, list, deadline))
            by_query = dict(zip(queries, query_vectors))
            scores = [maxsim(by_query[query], [vectors])[0]
                      for (query, _), vectors in zip(pairs, document_vectors)]
            return Scored(scores, _tokens(query_items) + _tokens(document_items))
        if spec.task == "causal_rerank":
            items = await self._tokenize(self._rerank_prompts, spec, pairs, truncate)
        else:
            items = await self._tokenize(self._text_tokenizer(spec).encode, pairs, truncate)
        logits = await self._submit(spec.name, "sequence_logits", items, np.stack, deadline)
        raw = logits[:, 1] - logits[:, 0] if spec.task == "causal_rerank" else logits[:, 0]
        scores = raw if raw_scores else 1.0 / (1.0 + np.exp(-raw))
        return Scored([float(x) for x in scores], _tokens(items))

    @_counted
    async def classify(self, model: str, texts: Sequence[str], truncate: bool = True,
                       deadline: float | None = None) -> Classified:
        """Label probabilities per input: softmax, or sigmoid per label for multi-label models."""
        spec = self.resolve(model)
        self._require(spec, "classify")
        self._check_inputs(texts)
        items = await self._tokenize(self._text_tokenizer(spec).encode, list(texts), truncate)
        logits = await self._submit(spec.name, "sequence_logits", items, np.stack, deadline)
        probabilities = 1.0 / (1.0 + np.exp(-logits)) if spec.multi_label else softmax(logits)
        return Classified(spec.labels, probabilities.astype(np.float32), _tokens(items))

    @_counted
    async def extract(self, model: str, texts: Sequence[str], truncate: bool = True,
                      deadline: float | None = None) -> Extracted:
        """Entity spans per input, with character offsets into the original text."""
        spec = self.resolve(model)
        self._require(spec, "extract")
        self._check_inputs(texts)
        texts = list(texts)
        items = await self._tokenize(self._text_tokenizer(spec).encode, texts, truncate, True)
        logits = await self._submit(spec.name, "token_logits", items, list, deadline)
        found = [entities(text, token_logits, item.offsets, spec.labels)
                 for text, token_logits, item in zip(texts, logits, items)]
        return Extracted(found, _tokens(items))

    @_counted
    async def tokenize(self, model: str, texts: Sequence[str], add_special_tokens: bool = True) -> list[list[Token]]:
        """The model's own tokenisation of each text (ids, token texts, character spans),
        untruncated, computed off the event loop."""
        spec = self.resolve(model)
        self._check_inputs(texts)
        if sum(len(text) for text in texts) > 10 * TOKENIZE_MAX_CHARS:
            raise InputTooLarge(f"these inputs hold more than {10 * TOKENIZE_MAX_CHARS} characters in all; "
                                f"list their tokens in smaller requests")
        tokenizer = self._text_tokenizer(spec)
        return await self._tokenize(lambda: [tokenizer.tokens(text, add_special_tokens) for text in texts])

    def models(self) -> list[ModelStatus]:
        result = []
        for entry in self.pool.entries.values():
            spec = entry.spec
            result.append(ModelStatus(
                name=spec.name, source=spec.source, state=entry.state, bytes=entry.bytes,
                capabilities=spec.capabilities, backend=self.backend(spec),
                dimension=spec.dimension, max_length=spec.max_length, loads=entry.loads,
                evictions=entry.evictions, last_used=entry.last_used, error=entry.error, pinned=spec.pin,
            ))
        return result

    async def load(self, model: str) -> str:
        """Make a model resident now (evicting others if needed), waiting at most the load
        timeout for room and for the load (LoadTimeout; the load goes on). Returns its state."""
        name = self.resolve(model).name
        await self.pool.ensure(name, timeout=self.config.load_timeout_seconds, retry_now=True)
        return self.pool.entries[name].state

    async def unload(self, model: str) -> str:
        """Release a model's device memory (to the host tier while it has room). Pinned,
        running or loading models are a Conflict. Returns its state."""
        name = self.resolve(model).name
        self.pool.unload(name)
        return self.pool.entries[name].state

    def queue_depth(self) -> dict[str, tuple[int, int]]:
        """model -> (queued items, queued tokens), for every known model."""
        depth = self.scheduler.depth()
        return {name: depth.get(name, (0, 0)) for name in self.specs}

    # ---- internals -------------------------------------------------------------------
    def _check_inputs(self, texts: Sequence[str], limit: int | None = None) -> None:
        limit = limit or self.config.max_inputs_per_request  # pairs: checked by the caller
        if not isinstance(texts, (list, tuple)) or not texts:
            raise InvalidInput("inputs must be a non-empty list of strings")
        if len(texts) > limit:
            raise TooManyInputs(f"{len(texts)} inputs in one request; the limit is {limit}")
        for position, text in enumerate(texts):
            if not isinstance(text, str):
                raise InvalidInput(f"input {position} is not a string")
            if not text:
                raise InvalidInput(f"input {position} is an empty string")

    def _require(self, spec: ModelSpec, capability: str) -> None:
        entry = self.pool.entries[spec.name]
        if entry.state != "resident" and entry.loading is None:
            self.pool.check_loadable(spec.name)  # fail fast: it failed recently, or can never fit
        if spec.problem and entry.state != "resident":
            raise ModelLoadError(f"model {spec.name!r} is unavailable: {spec.problem}; "
                                 f"fix its folder and POST /v1/models/{spec.name}/load")
        if capability not in spec.capabilities:
            raise UnsupportedOutput(f"model {spec.name!r} ({spec.task}) cannot give {capability!r}; "
                                    f"it gives {list(spec.capabilities)}")

    def _text_tokenizer(self, spec: ModelSpec) -> TextTokenizer:
        """Tokenizers are small and kept for every known model, resident or not."""
        return self._cached_tokenizer(spec, "text", lambda: TextTokenizer(spec.path, spec.max_length))

    def _colbert_tokenizer(self, spec: ModelSpec) -> ColbertTokenizer:
        return self._cached_tokenizer(spec, "colbert", lambda: ColbertTokenizer(spec.path, spec.colbert, spec.max_length))

    def _cached_tokenizer(self, spec: ModelSpec, kind: str, build):
        key = (spec.name, kind)
        if key not in self._tokenizers:
            try:
                self._tokenizers[key] = build()
            except Exception as error:  # a missing or broken tokenizer.json fails this model only
                raise ModelLoadError(f"model {spec.name!r}: cannot read its tokenizer: {error}") from error
        return self._tokenizers[key]

    def _rerank_prompts(self, spec: ModelSpec, pairs: list[tuple[str, str]], truncate: bool) -> list[Tokenized]:
        """Qwen3-Reranker's chat template around each (query, document) pair."""
        tokenizer = self._text_tokenizer(spec)
        prefix = tokenizer.encode_plain(QWEN3_RERANK_PREFIX)
        suffix = tokenizer.encode_plain(QWEN3_RERANK_SUFFIX)
        instruction = spec.instruction or DEFAULT_RERANK_INSTRUCTION
        room = spec.max_length - len(prefix) - len(suffix)
        items = []
        for position, (query, document) in enumerate(pairs):
            query, document = tokenizer.cut(query), tokenizer.cut(document)
            body = tokenizer.encode_plain(f"<Instruct>: {instruction}\n<Query>: {query}\n<Document>: {document}")
            if len(body) > room and not truncate:
                raise InputTooLong(f"document {position} is longer than the model's maximum and truncate is false")
            ids = prefix + body[:room] + suffix
            items.append(Tokenized(ids, [0] * len(ids)))
        return items

    async def _tokenize(self, function, *args):
        return await asyncio.get_running_loop().run_in_executor(self._tokenize_threads, function, *args)

    async def _submit(self, model: str, kind: str, items, finish, deadline: float | None) -> Any:
        if deadline is None and self.config.default_deadline_seconds:
            deadline = time.monotonic() + self.config.default_deadline_seconds
        if deadline is not None and deadline < time.monotonic():
            raise DeadlineExceeded("deadline passed before the request was queued")
        job = Job(model, kind, items, asyncio.get_running_loop().create_future(), finish, deadline)
        try:
            self.scheduler.submit(job)
        except EngineError as error:
            self.observer.rejected(error.kind)
            raise
        self._work.set()
        if model not in self.pool.resident():
            # Swaps start here and when the swap age comes, not only between batches, so a
            # cold model loads on the loader thread while the current batch computes.
            self._start_swaps()
            asyncio.get_running_loop().call_later(self.config.swap_age_seconds, self._start_swaps)
        return await job.future

    def _load_model(self, spec: ModelSpec) -> ServedModel:
        if spec.problem:  # re-read the folder: it may have been fixed since start-up
            try:
                spec = replace(spec_from_folder(spec.name, spec.path, spec.source), pin=spec.pin)
            except (EngineError, OSError, ValueError) as error:
                raise ModelLoadError(about_model(spec.name, error)) from error
            if spec.problem:
                raise ModelLoadError(about_model(spec.name, spec.problem))
            # the folder is readable now: serve it from here on (single assignments, safe across threads)
            self.specs[spec.name] = self.pool.entries[spec.name].spec = spec
            self._tokenizers.pop((spec.name, "text"), None)
            self._tokenizers.pop((spec.name, "colbert"), None)
        if find_architecture(spec.model_type, spec.architectures) is None:
            return FallbackModel.load(spec, self.device, self.dtype)
        return ServedModel.load(spec, self.device, self.dtype, (self.attention_name, self._attention))

    def backend(self, spec: ModelSpec) -> str:
        """The attention backend a model runs on: the engine's, or the transformers fallback."""
        if native_family(spec.model_type, spec.architectures) is None:
            return FALLBACK_BACKEND
        return self.attention_name

    async def _run(self) -> None:
        while True:
            self._start_swaps()
            resident = self.pool.resident()
            batch = self.scheduler.next_batch(lambda model: model in resident)
            if batch is None:
                self._work.clear()
                await self._work.wait()
                continue
            served = await self.pool.acquire(batch.model)
            try:
                started = time.perf_counter()
                outputs = await self._forward_with_recovery(served, batch)
                seconds = time.perf_counter() - started
            except asyncio.CancelledError:
                self._fail(batch, NotReady("the server stopped before this request was processed"))
                raise
            except EngineError as error:
                self._fail(batch, error)
                continue
            except Exception as error:  # a bug or device fault must not kill the worker
                log.exception("batch failed", extra={"model": batch.model})
                self._fail(batch, EngineError(f"inference failed: {type(error).__name__}: {error}"))
                continue
            finally:
                self.pool.release(batch.model)
            self.scheduler.record_throughput(batch.tokens, seconds)
            self.observer.batch_done(batch.model, len(batch.items), batch.tokens, seconds)
            self._deliver(batch, outputs)

    def _start_swaps(self) -> None:
        """Start loading the most urgent cold model that can be brought in now. The load runs
        on the loader thread while the device keeps serving resident models. A model that
        failed recently or can never fit beside the pinned models has its requests failed at
        once; one that must wait for a running batch to end is skipped, never blocking the
        models behind it."""
        if self._worker is None or self._worker.done() or self.pool.loading:
            return  # one loader thread: one load at a time; the next starts when it ends
        for model in self.scheduler.swap_candidates(self.pool.resident(), self.config.swap_age_seconds):
            try:
                self.pool.check_loadable(model)
            except EngineError as error:
                self.scheduler.fail_model(model, error)
                continue
            load = self.pool.begin_load(model)
            if load is not None:
                task = asyncio.create_task(self._swap_in(model, load))
                self._swaps = {task for task in self._swaps if not task.done()} | {task}
                return

    async def _swap_in(self, model: str, load: asyncio.Future) -> None:
        try:
            await load
            now = time.monotonic()
            for job in self.scheduler.jobs_of(model):
                self.observer.load_waited(model, now - job.enqueued_at)
        except ModelLoadError as error:
            self.scheduler.fail_model(model, error)
        finally:
            self._work.set()

    async def _forward_with_recovery(self, served: ServedModel, batch: Batch):
        """Out of device memory: evict idle models, split the batch and retry each half; an
        input that does not fit even alone fails its own request, and only that one."""
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._device_thread, self._forward, served, batch)
        except torch.OutOfMemoryError:
            self.pool.evict_idle("out_of_memory", keep=batch.model)
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
            if len(batch.items) == 1:
                return [Failed(EngineError("out of device memory even for this input alone"))]
            log.warning("out of memory: splitting the batch", extra={"model": batch.model, "items": len(batch.items)})
            middle = len(batch.items) // 2
            outputs = []
            for half in (batch.items[:middle], batch.items[middle:]):
                outputs.extend(await self._forward_with_recovery(served, Batch(batch.model, batch.kind, half)))
            return outputs

    def _forward(self, served: ServedModel, batch: Batch):
        items = [item.tokenized for item in batch.items]
        if batch.kind == "embed":
            return served.embed(items)
        if batch.kind.startswith("embed_"):
            return served.embed(items, pooling=batch.kind.removeprefix("embed_"))
        if batch.kind == "sparse":
            return served.sparse(items)
        if batch.kind == "sequence_logits":
            return served.sequence_logits(items)
        if batch.kind == "token_logits":
            return served.token_logits(items)
        if batch.kind.startswith("multivector_"):
            is_query = batch.kind == "multivector_query"
            colbert = self._colbert_tokenizer(served.spec)
            return served.token_vectors(items, [colbert.kept(item, is_query) for item in items])
        raise UnsupportedOutput(f"unknown work kind {batch.kind!r}")

    @staticmethod
    def _deliver(batch: Batch, outputs) -> None:
        for item, output in zip(batch.items, outputs):
            job = item.job
            if job.future.done():
                continue
            if isinstance(output, Failed):
                job.future.set_exception(output.error)
                continue
            job.outputs[item.index] = output
            job.remaining -= 1
            if job.remaining == 0:
                try:
                    job.future.set_result(job.finish(job.outputs))
                except Exception as error:  # finishing is ours: report it to the caller, keep serving
                    job.future.set_exception(EngineError(f"post-processing failed: {error}"))

    @staticmethod
    def _fail(batch: Batch, error: Exception) -> None:
        for item in batch.items:
            if not item.job.future.done():
                item.job.future.set_exception(error)


@dataclass(frozen=True)
class Failed:
    """In a batch's outputs: this item could not be computed (its request fails alone)."""

    error: EngineError


def default_memory_budget(device: torch.device) -> int:
    """A safe share of what is free now: 80% of free GPU memory, or half of available RAM."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free * 0.8)
    try:
        with open("/proc/meminfo") as f:
            available = next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:"))
    except (OSError, StopIteration):
        available = 8 * 2**30
    return available // 2


def _tokens(items: list[Tokenized]) -> int:
    return sum(len(item.ids) for item in items)


def _prompted(spec: ModelSpec, texts: list[str], input_type: str) -> list[str]:
    """sentence-transformers prompts (e.g. e5's "query: " / "passage: ") by input type."""
    prompt = spec.prompts.get(input_type, "")
    return [prompt + text for text in texts] if prompt else texts


def _top_k(indices: np.ndarray, values: np.ndarray, k: int | None) -> tuple[np.ndarray, np.ndarray]:
    """The k largest weights, still in ascending index order."""
    if k is None or len(values) <= k:
        return indices, values
    keep = np.sort(np.argpartition(-values, k - 1)[:k])
    return indices[keep], values[keep]
