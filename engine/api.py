"""The engine as its callers see it, without torch: configuration, result and status types,
the observer hooks, and the `EngineAPI` protocol the gateway is written against. Importing
this module (or the `engine` package) never imports torch; `engine.engine.Engine`, the
implementation, does."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Protocol, Sequence, runtime_checkable

import numpy as np

from .entities import Entity
from .spec import ModelSpec
from .tokenize import Token

OUTPUTS = ("dense", "sparse", "multivector")


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
class Encoded:
    output: str
    # dense: [n, d] float32; sparse: [(indices, values)] per input; multivector: [k_i, d] per input
    embeddings: Any
    input_tokens: int
    labels: list[list[str]] | None = None  # sparse, on request: the vocabulary token of each index


@dataclass(frozen=True)
class Scored:
    scores: list[float]  # one per document (or pair), in input order
    input_tokens: int


@dataclass(frozen=True)
class Classified:
    labels: tuple[str, ...]
    probabilities: np.ndarray  # [n, labels]
    input_tokens: int
    threshold: float | None = None  # a request's threshold: answers leave out the labels scored below it


@dataclass(frozen=True)
class Extracted:
    entities: list[list[Entity]]  # per input
    input_tokens: int


@dataclass(frozen=True)
class ModelStatus:
    name: str
    source: str | None
    state: str  # disk | host | loading | resident | failed
    # None where the model's folder could not be read (state `failed`): unknown, never a guess
    bytes: int | None
    capabilities: tuple[str, ...] | None
    backend: str | None
    dimension: int | None
    max_length: int | None
    loads: int
    evictions: int
    last_used: float | None
    error: str | None
    pinned: bool
    labels_at_request: bool | None = False  # zero-shot classifiers and GLiNER take their labels per request


@dataclass(frozen=True)
class ServerInfo:
    """What the engine runs on and the limits it enforces (for /v1/models, TEI's /info and
    rate-limit headers)."""

    device: str
    dtype: str
    attention: str
    max_batch_tokens: int
    max_queue_tokens: int
    max_inputs: int
    tokenizer_threads: int


@dataclass(frozen=True)
class PoolStats:
    resident: int  # models on the device
    device_bytes: int
    host_bytes: int
    budget: int
    host_budget: int


@runtime_checkable
class EngineAPI(Protocol):
    """What the gateway calls. `engine.engine.Engine` implements it."""

    @property
    def ready(self) -> bool: ...
    def can_serve(self) -> bool: ...
    def info(self) -> ServerInfo: ...
    def resolve(self, model: str) -> ModelSpec: ...
    def models(self) -> list[ModelStatus]: ...
    def queue_depth(self) -> dict[str, tuple[int, int]]: ...
    def queued_tokens(self) -> int: ...
    def pool_stats(self) -> PoolStats: ...
    def set_observer(self, observer: EngineObserver) -> None: ...
    async def start(self) -> None: ...
    async def stop(self, drain_seconds: float = 30.0) -> None: ...
    async def load(self, model: str) -> str: ...
    async def unload(self, model: str) -> str: ...
    async def encode(self, model: str, texts: Sequence[str], input_type: str = "document", output: str = "dense",
                     dimensions: int | None = None, normalize: bool | None = None, truncate: bool = True,
                     deadline: float | None = None, top_k: int | None = None, return_labels: bool = False,
                     pooling: str | None = None) -> Encoded: ...
    async def score(self, model: str, query: str, documents: Sequence[str], raw_scores: bool = False,
                    truncate: bool = True, deadline: float | None = None) -> Scored: ...
    async def score_pairs(self, model: str, pairs: Sequence[tuple[str, str]], raw_scores: bool = False,
                          truncate: bool = True, deadline: float | None = None) -> Scored: ...
    async def classify(self, model: str, texts: Sequence[str], truncate: bool = True, deadline: float | None = None,
                       labels: Sequence[str] | None = None, multi_label: bool | None = None,
                       hypothesis_template: str | None = None, threshold: float | None = None) -> Classified: ...
    async def extract(self, model: str, texts: Sequence[str], truncate: bool = True, deadline: float | None = None,
                      labels: Sequence[str] | None = None, threshold: float | None = None,
                      flat_ner: bool | None = None, multi_label: bool | None = None) -> Extracted: ...
    async def tokenize(self, model: str, texts: Sequence[str], add_special_tokens: bool = True) -> list[list[Token]]: ...
