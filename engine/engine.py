"""The Engine: the async facade the gateway, tests and benchmarks call.

A call is checked, tokenised on a thread pool (off the event loop), submitted to the
scheduler as one job of typed `Work` for its model, and awaited; the device worker
(worker.py) batches, swaps and runs it; the answer is finished per task (tasks.py). The pool
(pool.py) owns every model's spec and state; this class asks it."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any, Callable, Sequence

import numpy as np
import torch

from . import compress as compression
from . import gliclass, gliner
from .api import (
    OUTPUTS,
    Classified,
    Encoded,
    EngineConfig,
    EngineObserver,
    Extracted,
    ModelStatus,
    PoolStats,
    Scored,
    ServerInfo,
)
from .attention import select_backend
from .colbert import ColbertTokenizer, maxsim
from .device import resolve_device, resolve_dtype
from .entities import entities
from .errors import (
    DeadlineExceeded,
    EngineError,
    InputTooLarge,
    InvalidInput,
    ModelLoadError,
    NotReady,
    TooManyInputs,
    UnsupportedOutput,
    about_model,
    public_reason,
)
from .fallback import BACKEND_NAME as FALLBACK_BACKEND
from .fallback import FallbackModel
from .models import find_architecture, native_family
from .pool import ModelPool
from .scheduler import Job, Scheduler
from .served import ServedModel
from .spec import INPUT_TYPES, POOLING_MODES, ModelSpec, folder_fingerprint, spec_from_folder
from .tasks import (DEFAULT_HYPOTHESIS, TASKS, Head, Work, finish_dense, label_probabilities, largest_weights,
                    pair_scores, zero_shot_probabilities)
from .tokenize import TOKENIZE_MAX_CHARS, TextTokenizer, Token, Tokenized
from .worker import DeviceWorker

log = logging.getLogger("shoal.engine")

# Large enough that a vector database's bulk import (Weaviate sends one object per
# request and does not retry a 429) queues instead of failing; the deadline bounds the wait.
DEFAULT_QUEUE_TOKENS = 2**20


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
        self.config = config
        self.observer = observer or EngineObserver()
        self.device = resolve_device(config.device)
        self.dtype = resolve_dtype(config.dtype, self.device)
        self.attention_name, self._attention = select_backend(self.device, config.attention)
        self.max_batch_tokens = config.max_batch_tokens or (16384 if self.device.type == "cuda" else 4096)
        self.scheduler = Scheduler(self.max_batch_tokens, config.max_queue_tokens or DEFAULT_QUEUE_TOKENS)
        element_size = torch.empty((), dtype=self.dtype).element_size()
        budget = config.memory_budget or default_memory_budget(self.device)
        host_cache = config.host_cache if config.host_cache is not None else budget
        self.pool = ModelPool(list(specs), self._load_model, element_size, budget, host_cache, self.observer)
        self._tokenizers: dict[tuple[str, str], tuple[ModelSpec, Any]] = {}
        self._tokenize_threads: ThreadPoolExecutor | None = None  # made by start(), with the worker's threads
        self._threads: list[ThreadPoolExecutor] = []
        self.worker: DeviceWorker | None = None
        self._accepting = False
        self._active = 0  # public calls in progress (tokenising, queued or on the device)
        self._idle = asyncio.Event()
        self._idle.set()

    def set_observer(self, observer: EngineObserver) -> None:
        self.observer = self.pool.observer = observer
        if self.worker is not None:
            self.worker.observer = observer

    # ---- lifecycle -------------------------------------------------------------------
    async def start(self) -> None:
        device_thread, load_thread = await _compute_threads(torch.get_num_threads())  # settles this thread's too
        self._tokenize_threads = ThreadPoolExecutor(self.config.tokenizer_threads, thread_name_prefix="shoal-tokenize")
        self._threads = [device_thread, load_thread, self._tokenize_threads]
        self.pool.executor = load_thread
        self.worker = DeviceWorker(self.scheduler, self.pool, self.device, device_thread, self.observer,
                                   self.config.swap_age_seconds)
        self._accepting = True
        self.worker.start()
        log.info("engine started", extra={"device": str(self.device), "dtype": self.info().dtype,
                                          "attention": self.attention_name, "max_batch_tokens": self.max_batch_tokens,
                                          "models": list(self.pool.entries)})

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
        if self.worker is not None:
            await self.worker.stop()
        stopped = NotReady("the server stopped before this request was processed")
        for queue in list(self.scheduler.queues.values()):
            for job in list(queue.jobs):
                self.scheduler.fail(job, stopped)
        for executor in self._threads:
            executor.shutdown(wait=False, cancel_futures=True)

    @property
    def ready(self) -> bool:
        return self._accepting and self.worker is not None and self.worker.running

    def can_serve(self) -> bool:
        """Whether at least one configured model can serve: not every one has failed. A
        failed model counts again once a load succeeds (an operator's, after a fix)."""
        return any(entry.state != "failed" for entry in self.pool.entries.values())

    # ---- what is served, and how -------------------------------------------------------
    def resolve(self, model: str) -> ModelSpec:
        return self.pool.resolve(model)

    def info(self) -> ServerInfo:
        return ServerInfo(device=str(self.device), dtype=str(self.dtype).removeprefix("torch."),
                          attention=self.attention_name, max_batch_tokens=self.max_batch_tokens,
                          max_queue_tokens=self.scheduler.max_queue_tokens,
                          max_inputs=self.config.max_inputs_per_request,
                          tokenizer_threads=self.config.tokenizer_threads)

    def models(self) -> list[ModelStatus]:
        return [self._status(entry) for entry in self.pool.entries.values()]

    def _status(self, entry) -> ModelStatus:
        """A model's state. What only its folder can tell (task, sizes, dimension) is None when
        the folder could not be read, and its size is None when its weights could not be."""
        spec = entry.spec
        read = bool(spec.config)  # an unreadable folder's spec holds placeholders only
        return ModelStatus(name=spec.name, source=spec.source, state=entry.state,
                           bytes=entry.bytes if read and spec.parameter_count else None,
                           capabilities=spec.capabilities if read else None,
                           backend=self.backend(spec) if read else None,
                           dimension=spec.dimension if read else None, max_length=spec.max_length if read else None,
                           loads=entry.loads, evictions=entry.evictions, last_used=entry.last_used, error=entry.error,
                           pinned=spec.pin, labels_at_request=TASKS[spec.task].labels_at_request if read else None)

    def backend(self, spec: ModelSpec) -> str:
        """The attention backend a model runs on: the engine's, or the transformers fallback."""
        return FALLBACK_BACKEND if native_family(spec.model_type, spec.architectures) is None else self.attention_name

    def queue_depth(self) -> dict[str, tuple[int, int]]:
        """model -> (queued items, queued tokens), for every known model."""
        depth = self.scheduler.depth()
        return {name: depth.get(name, (0, 0)) for name in self.pool.entries}

    def queued_tokens(self) -> int:
        return self.scheduler.queued_tokens

    def pool_stats(self) -> PoolStats:
        pool = self.pool
        return PoolStats(len(pool.resident()), pool.device_bytes, pool.host_bytes, pool.budget, pool.host_budget)

    # ---- operator actions --------------------------------------------------------------
    async def load(self, model: str) -> str:
        """Make a model resident now (evicting others if needed), waiting at most the load
        timeout for room and for the load (LoadTimeout; the load goes on). Returns its state."""
        name = self.resolve(model).name
        await self.pool.ensure(name, timeout=self.config.load_timeout_seconds, retry_now=True,
                               queued=self.scheduler.waiting_models())
        return self.pool.entries[name].state

    async def unload(self, model: str) -> str:
        """Release a model's device memory (to the host tier while it has room). Pinned,
        running or loading models are a Conflict. Returns its state."""
        name = self.resolve(model).name
        self.pool.unload(name)
        return self.pool.entries[name].state

    # ---- requests ----------------------------------------------------------------------
    @_counted
    async def encode(self, model: str, texts: Sequence[str], input_type: str = "document", output: str = "dense",
                     dimensions: int | None = None, normalize: bool | None = None, truncate: bool = True,
                     deadline: float | None = None, top_k: int | None = None,
                     return_labels: bool = False, pooling: str | None = None) -> Encoded:
        """Embed texts. dense: one vector each (Matryoshka `dimensions`, `normalize`, and
        `pooling` to override the model's own, e.g. for Weaviate's pooling_strategy);
        sparse: SPLADE (index, value) pairs, optionally the `top_k` largest, with
        vocabulary `labels`; multivector: ColBERT token vectors (query or document),
        Matryoshka-truncated to `dimensions` and renormalised."""
        spec = self.resolve(model)
        self._check_inputs(texts)
        if input_type not in INPUT_TYPES:
            raise InvalidInput(f"input_type must be one of {INPUT_TYPES}, got {input_type!r}")
        if output not in OUTPUTS:
            raise InvalidInput(f"output must be one of {OUTPUTS}, got {output!r}")
        self._require(spec, output)
        if dimensions is not None and not (isinstance(dimensions, int) and 0 < dimensions <= spec.dimension):
            raise InvalidInput(f"dimensions must be an integer from 1 to {spec.dimension} for model {spec.name!r}")
        texts = list(texts)
        if output == "multivector":
            items = await self._tokenize(self._colbert_tokenizer(spec).encode, texts, input_type == "query", truncate)
            vectors = await self._submit(spec, Work(Head.TOKEN_VECTORS), items, list, deadline)
            if dimensions is not None:
                vectors = [finish_dense(tokens, dimensions, normalize=True) for tokens in vectors]
            return Encoded(output, vectors, _tokens(items))
        if output == "sparse":
            if top_k is not None and not (isinstance(top_k, int) and top_k > 0):
                raise InvalidInput("top_k must be a positive integer")
            items = await self._tokenize(self._text_tokenizer(spec).encode, _prompted(spec, texts, input_type),
                                         truncate)
            weights = await self._submit(spec, Work(Head.SPARSE), items, list, deadline)
            weights = [largest_weights(indices, values, top_k) for indices, values in weights]
            labels = None
            if return_labels:
                tokenizer = self._text_tokenizer(spec)
                labels = [[tokenizer.id_to_token(int(i)) for i in indices] for indices, _ in weights]
            return Encoded(output, weights, _tokens(items), labels)
        if pooling is not None and pooling not in POOLING_MODES:
            raise InvalidInput(f"pooling must be one of {POOLING_MODES}, got {pooling!r}")
        items = await self._tokenize(self._text_tokenizer(spec).encode, _prompted(spec, texts, input_type), truncate)
        work = Work(Head.POOLED, None if pooling == spec.pooling else pooling)
        vectors = await self._submit(spec, work, items, np.stack, deadline)
        normalize = spec.normalize if normalize is None else normalize
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
        pairs = [(query, document) for document in documents]
        return await self._score_pairs(model, pairs, raw_scores, truncate, deadline)

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
        task = TASKS[spec.task]
        if task.pair_logit is None:  # ColBERT: late interaction over token vectors
            return await self._maxsim_pairs(spec, pairs, truncate, deadline)
        if task.prompted_pairs:  # the model's own template around each pair (Qwen3-Reranker)
            architecture = find_architecture(spec.model_type, spec.architectures)
            items = await self._tokenize(architecture.format_pairs, self._text_tokenizer(spec), spec.instruction,
                                         pairs, truncate)
        else:
            items = await self._tokenize(self._text_tokenizer(spec).encode, pairs, truncate)
        logits = await self._submit(spec, Work(Head.SEQUENCE_LOGITS), items, np.stack, deadline)
        return Scored(pair_scores(task, logits, raw_scores), _tokens(items))

    async def _maxsim_pairs(self, spec: ModelSpec, pairs: list[tuple[str, str]], truncate: bool,
                            deadline: float | None) -> Scored:
        colbert = self._colbert_tokenizer(spec)
        queries = list(dict.fromkeys(query for query, _ in pairs))  # each distinct query once
        query_items, document_items = await asyncio.gather(
            self._tokenize(colbert.encode, queries, True, truncate),
            self._tokenize(colbert.encode, [document for _, document in pairs], False, truncate))
        query_vectors, document_vectors = await asyncio.gather(
            self._submit(spec, Work(Head.TOKEN_VECTORS), query_items, list, deadline),
            self._submit(spec, Work(Head.TOKEN_VECTORS), document_items, list, deadline))
        by_query = dict(zip(queries, query_vectors))
        scores = [maxsim(by_query[query], [vectors])[0] for (query, _), vectors in zip(pairs, document_vectors)]
        return Scored(scores, _tokens(query_items) + _tokens(document_items))

    @_counted
    async def classify(self, model: str, texts: Sequence[str], truncate: bool = True, deadline: float | None = None,
                       labels: Sequence[str] | None = None, multi_label: bool | None = None,
                       hypothesis_template: str | None = None, threshold: float | None = None) -> Classified:
        """Label probabilities per input. Fixed-label classifiers: softmax, or a sigmoid per
        label for multi-label models, over the labels of their config. Zero-shot (NLI)
        classifiers: over the `labels` given, each posed as `hypothesis_template` about the
        text, scored as transformers' zero-shot-classification pipeline does. GLiClass models:
        over the `labels` given, in one prompt with the text (engine.gliclass), multi-label as
        the model was trained unless `multi_label` says. With labels given, `threshold` leaves
        out of answers the labels scored below it. `texts` may also be (text, text) pairs,
        classified over the model's own labels (an NLI model judging a premise and a
        hypothesis, TEI's /predict with pairs)."""
        spec = self.resolve(model)
        self._require(spec, "classify")
        if texts and all(isinstance(text, (list, tuple)) for text in texts):
            return await self._classify_pairs(spec, texts, truncate, deadline)
        self._check_inputs(texts)
        if TASKS[spec.task].labels_at_request:
            if threshold is not None and (isinstance(threshold, bool) or not isinstance(threshold, (int, float))
                                          or not 0 <= threshold <= 1):
                raise InvalidInput("threshold must be a number from 0 to 1")
            if spec.task == "gliclass":
                if hypothesis_template is not None:
                    raise InvalidInput(f"model {spec.name!r} is a GLiClass model: it reads the labels themselves; "
                                       f"hypothesis_template is for NLI zero-shot models")
                result = await self._gliclass(spec, list(texts), labels, multi_label, truncate, deadline)
            else:
                result = await self._zero_shot(spec, list(texts), labels, bool(multi_label), hypothesis_template,
                                               truncate, deadline)
            return replace(result, threshold=None if threshold is None else float(threshold))
        for name, value in (("labels", labels), ("multi_label", multi_label),
                            ("hypothesis_template", hypothesis_template), ("threshold", threshold)):
            if value is not None:
                raise InvalidInput(f"model {spec.name!r} classifies into its own labels {list(spec.labels)}; "
                                   f"{name} is for zero-shot models")
        items = await self._tokenize(self._text_tokenizer(spec).encode, list(texts), truncate)
        logits = await self._submit(spec, Work(Head.SEQUENCE_LOGITS), items, np.stack, deadline)
        return Classified(spec.labels, label_probabilities(logits, spec.multi_label), _tokens(items))

    async def _classify_pairs(self, spec: ModelSpec, pairs: Sequence, truncate: bool,
                              deadline: float | None) -> Classified:
        if not all(len(pair) == 2 for pair in pairs):
            raise InvalidInput("each pair must hold two texts")
        self._check_inputs([text for pair in pairs for text in pair], limit=2 * self.config.max_inputs_per_request)
        items = await self._tokenize(self._text_tokenizer(spec).encode, [tuple(pair) for pair in pairs], truncate)
        logits = await self._submit(spec, Work(Head.SEQUENCE_LOGITS), items, np.stack, deadline)
        return Classified(spec.labels, label_probabilities(logits, spec.multi_label), _tokens(items))

    async def _zero_shot(self, spec: ModelSpec, texts: list[str], labels: Sequence[str] | None, multi_label: bool,
                         template: str | None, truncate: bool, deadline: float | None) -> Classified:
        labels = check_labels(labels, spec.name)
        template = DEFAULT_HYPOTHESIS if template is None else template
        if not isinstance(template, str) or template.format(labels[0]) == template:
            raise InvalidInput("hypothesis_template must be a string with {} where the label goes, "
                               f"like {DEFAULT_HYPOTHESIS!r}")
        if len(texts) * len(labels) > self.config.max_inputs_per_request:
            raise TooManyInputs(f"{len(texts)} inputs x {len(labels)} labels = {len(texts) * len(labels)} pairs; "
                                f"the limit is {self.config.max_inputs_per_request}")
        pairs = [(text, template.format(label)) for text in texts for label in labels]
        items = await self._tokenize(self._text_tokenizer(spec).encode, pairs, truncate, False, True)
        logits = await self._submit(spec, Work(Head.SEQUENCE_LOGITS), items, np.stack, deadline)
        scores = zero_shot_probabilities(logits.reshape(len(texts), len(labels), -1), spec.labels, multi_label)
        return Classified(tuple(labels), scores, _tokens(items))

    async def _gliclass(self, spec: ModelSpec, texts: list[str], labels: Sequence[str] | None,
                        multi_label: bool | None, truncate: bool, deadline: float | None) -> Classified:
        """One sequence per text, its labels in the prompt: a logit per label, then softmax or sigmoid."""
        labels = check_labels(labels, spec.name)
        items = await self._tokenize(self._gliclass_tokenizer(spec).encode, texts, labels, truncate)
        logits = await self._submit(spec, Work(Head.PROMPTED_LABELS), items, np.stack, deadline)
        multi_label = spec.multi_label if multi_label is None else bool(multi_label)
        return Classified(tuple(labels), label_probabilities(logits, multi_label), _tokens(items))

    @_counted
    async def extract(self, model: str, texts: Sequence[str], truncate: bool = True, deadline: float | None = None,
                      labels: Sequence[str] | None = None, threshold: float | None = None,
                      flat_ner: bool | None = None, multi_label: bool | None = None) -> Extracted:
        """Entity spans per input, with character offsets into the original text. Token
        classifiers tag with the labels of their config; GLiNER models find the `labels`
        given, keeping spans scored above `threshold`, without overlaps (`flat_ner`, the
        default) or nested, one label per span unless `multi_label` (engine.gliner)."""
        spec = self.resolve(model)
        self._require(spec, "extract")
        self._check_inputs(texts)
        texts = list(texts)
        if TASKS[spec.task].labels_at_request:
            return await self._gliner(spec, texts, labels, threshold, flat_ner, multi_label, deadline)
        for name, value in (("labels", labels), ("threshold", threshold), ("flat_ner", flat_ner),
                            ("multi_label", multi_label)):
            if value is not None:
                raise InvalidInput(f"model {spec.name!r} tags the labels of its own config {list(spec.labels)}; "
                                   f"{name} is for GLiNER models")
        items = await self._tokenize(self._text_tokenizer(spec).encode, texts, truncate, True)
        logits = await self._submit(spec, Work(Head.TOKEN_LOGITS), items, list, deadline)
        found = [entities(text, token_logits, item.offsets, spec.labels)
                 for text, token_logits, item in zip(texts, logits, items)]
        return Extracted(found, _tokens(items))

    async def _gliner(self, spec: ModelSpec, texts: list[str], labels: Sequence[str] | None, threshold: float | None,
                      flat_ner: bool | None, multi_label: bool | None, deadline: float | None) -> Extracted:
        """Long texts are scored in windows, never cut, so `truncate` does not apply."""
        labels = check_labels(labels, spec.name)
        threshold = gliner.DEFAULT_THRESHOLD if threshold is None else threshold
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 <= threshold <= 1:
            raise InvalidInput("threshold must be a number from 0 to 1")
        items = await self._tokenize(self._gliner_tokenizer(spec).encode, texts, labels)
        scores = await self._submit(spec, Work(Head.SPANS), items, list, deadline) if items else []
        # decoding is a Python loop over the spans above the threshold: off the event loop
        found = await self._tokenize(gliner.entities, texts, items, scores, labels, float(threshold),
                                     True if flat_ner is None else bool(flat_ner), bool(multi_label))
        return Extracted(found, _tokens(items))

    @_counted
    async def compress(self, model: str, contexts: Sequence[str], rate: float | None = None,
                       threshold: float | None = None, force_tokens: Sequence[str] | None = None,
                       query: str | None = None, top_k: int | None = None, return_scores: bool = False,
                       deadline: float | None = None) -> compression.Compressed:
        """Shorter contexts, each compressed on its own (engine.compress). Without a query: a
        token classifier with a keep/drop head (LLMLingua-2) keeps the words that meet `rate`
        (the share of cl100k_base tokens kept, 0.5 by default) or `threshold` (a word's keep
        probability), and `force_tokens` always. With a `query`: a reranker scores every
        sentence of every context in one request, and the sentences scored at or above
        `threshold`, or the `top_k` best, stay in order; `return_scores` lists them all."""
        spec = self.resolve(model)
        limit = self.config.max_inputs_per_request
        if query is not None:
            if "score" not in spec.capabilities:
                raise UnsupportedOutput(f"model {spec.name!r} ({spec.task}) cannot prune by a query: that needs a "
                                        f"reranker (cross-encoder){_compress_hint(spec)}")
            for name, value in (("rate", rate), ("force_tokens", force_tokens)):
                if value is not None:
                    raise InvalidInput(f"{name} is for token-level compression (no query); with a query send "
                                       f"threshold or top_k")
            threshold, top_k = compression.check_query_options(query, threshold, top_k)
            contexts = compression.check_contexts(contexts, limit, spec.max_length)
            self._require(spec, "score")
            spans = await self._tokenize(lambda: [compression.split_sentences(c) for c in contexts])
            sentences = sum(len(s) for s in spans)
            if sentences > limit:
                raise TooManyInputs(f"these contexts hold {sentences} sentences; the limit is {limit} per request")
            pairs = [(query, context[start:end]) for context, found in zip(contexts, spans) for start, end in found]
            scored = await self._score_pairs(spec.name, pairs, False, True, deadline)
            results = await self._tokenize(compression.prune_all, contexts, spans, scored.scores, threshold, top_k,
                                           return_scores)
            return compression.Compressed(results, scored.input_tokens)
        for name, value in (("top_k", top_k), ("return_scores", return_scores or None)):
            if value is not None:
                raise InvalidInput(f"{name} is for query-aware pruning: send a `query` and a reranker model")
        if not _keep_drop(spec):
            raise UnsupportedOutput(f"model {spec.name!r} ({spec.task}) cannot compress: token-level compression needs "
                                    f"a token classifier with a keep/drop head (2 labels, as LLMLingua-2 ships)"
                                    f"{_compress_hint(spec)}")
        rate, threshold, force_tokens = compression.check_token_options(rate, threshold, force_tokens)
        contexts = compression.check_contexts(contexts, limit, spec.max_length)
        self._require(spec, "extract")
        tokenizer = self._cached_tokenizer(spec, "compress", lambda: compression.CompressTokenizer(
            spec.path, spec.max_length, spec.config.get("vocab_size")))
        if tokenizer.problem:
            raise UnsupportedOutput(f"model {spec.name!r} cannot compress: {tokenizer.problem}")
        prepared = await self._tokenize(tokenizer.prepare, contexts, force_tokens, limit)
        logits = []
        if prepared.items and rate != 1:
            logits = await self._submit(spec, Work(Head.TOKEN_LOGITS), prepared.items, list, deadline)
        results = await self._tokenize(tokenizer.finish, prepared, logits, rate, threshold)
        return compression.Compressed(results, prepared.input_tokens if logits else 0)

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
            raise ModelLoadError(f"{entry.error or about_model(spec.name, 'its folder cannot be read')}; "
                                 f"fix its folder and POST /v1/models/{spec.name}/load")
        if capability not in spec.capabilities:
            raise UnsupportedOutput(f"model {spec.name!r} ({spec.task}) cannot give {capability!r}; "
                                    f"it gives {list(spec.capabilities)}")

    def _text_tokenizer(self, spec: ModelSpec) -> TextTokenizer:
        """Tokenizers are small and kept for every known model, resident or not."""
        return self._cached_tokenizer(spec, "text", lambda: TextTokenizer(spec.path, spec.max_length))

    def _colbert_tokenizer(self, spec: ModelSpec) -> ColbertTokenizer:
        return self._cached_tokenizer(spec, "colbert", lambda: ColbertTokenizer(spec.path, spec.colbert, spec.max_length))

    def _gliner_tokenizer(self, spec: ModelSpec) -> gliner.GlinerTokenizer:
        return self._cached_tokenizer(spec, "gliner",
                                      lambda: gliner.GlinerTokenizer(spec.path, spec.gliner, spec.max_length))

    def _gliclass_tokenizer(self, spec: ModelSpec) -> gliclass.GliclassTokenizer:
        return self._cached_tokenizer(spec, "gliclass",
                                      lambda: gliclass.GliclassTokenizer(spec.path, spec.gliclass, spec.max_length))

    def _cached_tokenizer(self, spec: ModelSpec, kind: str, build: Callable[[], Any]):
        """One tokenizer per model and kind, built again when the pool's spec changed (a
        folder fixed after start-up)."""
        cached = self._tokenizers.get((spec.name, kind))
        if cached is None or cached[0] is not spec:
            try:
                cached = self._tokenizers[(spec.name, kind)] = (spec, build())
            except Exception as error:  # a missing or broken tokenizer.json fails this model only
                reason = f"model {spec.name!r}: cannot read its tokenizer: {error}"
                log.error("tokenizer unreadable", extra={"model": spec.name, "reason": reason})
                self.pool.mark_failed(spec.name, public_reason(reason, spec.path))
                raise ModelLoadError(public_reason(reason, spec.path)) from error
        return cached[1]

    async def _tokenize(self, function, *args):
        return await asyncio.get_running_loop().run_in_executor(self._tokenize_threads, function, *args)

    async def _submit(self, spec: ModelSpec, work: Work, items: list[Tokenized], finish, deadline: float | None) -> Any:
        if deadline is None and self.config.default_deadline_seconds:
            deadline = time.monotonic() + self.config.default_deadline_seconds
        if deadline is not None and deadline < time.monotonic():
            raise DeadlineExceeded("deadline passed before the request was queued")
        job = Job(spec.name, work, items, asyncio.get_running_loop().create_future(), finish, deadline)
        try:
            self.scheduler.submit(job)
        except EngineError as error:
            self.observer.rejected(error.kind)
            raise
        self.worker.submitted(spec.name)
        return await job.future

    def _load_model(self, spec: ModelSpec) -> ServedModel:
        """The pool's loader (on the loader thread). A folder that was unreadable, or whose
        files changed since its spec was read, is read again (fixed or replaced since); the
        served model carries the new spec."""
        if spec.problem or folder_fingerprint(spec.path) != spec.fingerprint:
            try:
                spec = replace(spec_from_folder(spec.name, spec.path, spec.source), pin=spec.pin)
            except (EngineError, OSError, ValueError) as error:
                raise ModelLoadError(about_model(spec.name, error)) from error
            if spec.problem:
                raise ModelLoadError(about_model(spec.name, spec.problem))
        if find_architecture(spec.model_type, spec.architectures) is None:
            return FallbackModel.load(spec, self.device, self.dtype)
        return ServedModel.load(spec, self.device, self.dtype, (self.attention_name, self._attention))


async def _compute_threads(threads: int) -> tuple[ThreadPoolExecutor, ThreadPoolExecutor]:
    """The device thread, its torch thread count fixed now, and the loader thread. torch
    keeps the count per thread but a thread takes the process-wide value when it first runs
    parallel work, and loads change that value for a moment (linear.one_torch_thread):
    fixing the device thread's count before any load keeps it from ever catching that."""
    def fix(count: int) -> None:
        torch.set_num_threads(count)
        torch.get_num_threads()  # the thread's first parallel-runtime use: its count is settled

    loop = asyncio.get_running_loop()
    device_thread = ThreadPoolExecutor(1, thread_name_prefix="shoal-device")
    await loop.run_in_executor(device_thread, fix, threads)
    return device_thread, ThreadPoolExecutor(1, thread_name_prefix="shoal-load")


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


MAX_LABELS = 64  # candidate labels per request (each costs a pass over every input)
MAX_LABEL_CHARS = 200


def check_labels(labels: Sequence[str] | None, model: str) -> list[str]:
    """Labels given at request time: 1 to MAX_LABELS distinct non-empty strings."""
    if labels is None:
        raise InvalidInput(f"model {model!r} takes the labels you name with each request: send `labels`")
    if not isinstance(labels, (list, tuple)) or not labels:
        raise InvalidInput("labels must be a non-empty list of strings")
    if len(labels) > MAX_LABELS:
        raise TooManyInputs(f"{len(labels)} labels in one request; the limit is {MAX_LABELS}")
    for position, label in enumerate(labels):
        if not isinstance(label, str) or not label.strip():
            raise InvalidInput(f"label {position} must be a non-empty string")
        if len(label) > MAX_LABEL_CHARS:
            raise InvalidInput(f"label {position} has {len(label)} characters; the limit is {MAX_LABEL_CHARS}")
    if len(set(labels)) != len(labels):
        raise InvalidInput("labels must be distinct")
    return list(labels)


def _keep_drop(spec: ModelSpec) -> bool:
    """A token classifier with two labels (transformers' default when its config names none)."""
    return spec.task == "extract" and len(spec.labels or ("drop", "keep")) == 2


def _compress_hint(spec: ModelSpec) -> str:
    if "score" in spec.capabilities:
        return "; this one is a reranker: send a `query` to prune sentences by relevance"
    if _keep_drop(spec):
        return "; this one is a keep/drop token classifier: send no `query`"
    return ""


def _tokens(items: list[Tokenized]) -> int:
    return sum(len(item.ids) for item in items)


def _prompted(spec: ModelSpec, texts: list[str], input_type: str) -> list[str]:
    """sentence-transformers prompts (e.g. e5's "query: " / "passage: ") by input type."""
    prompt = spec.prompts.get(input_type, "")
    return [prompt + text for text in texts] if prompt else texts

