"""Shoal's native API: /v1/encode, score, classify, extract, compress, and model management. JSON or
msgpack."""

from __future__ import annotations

from functools import partial
from typing import Literal

import msgspec
from litestar import Controller, Request, Response, get, post

from engine import EngineAPI

from ..errors import ApiError, NativeError, error_handler, native_shape
from ..openapi import INFERENCE, LISTING, LOAD, UNLOAD, error_responses
from ..wire import respond
from .common import best_first, deadline_from, note_model

# `responses=` for this controller's routes: the statuses each can answer, in the native API's error body
errors = partial(error_responses, NativeError, native_shape)


class Usage(msgspec.Struct):
    input_tokens: int


class StrictRequest(msgspec.Struct, forbid_unknown_fields=True):
    """A native request body: a field this API does not define is a 422 naming it (a typo such as
    `normalise` is refused, not silently ignored; the schema says `additionalProperties: false`).
    Protocol routes ignore fields they do not define, as the servers their clients were written
    for do: TEI (serde structs without deny_unknown_fields), Ollama (Go's encoding/json), the
    Weaviate module containers (pydantic's default), Cohere (Weaviate's reranker-cohere sends v1's
    `return_documents` to /v2/rerank), Jina (lenient like the rest), and OpenAI's route, although
    api.openai.com refuses unknown arguments: the route also takes Jina's bodies (Weaviate's
    text2vec-jinaai) and OpenAI-compatible clients' extras, which TEI's and vLLM's routes ignore."""


class EncodeRequest(StrictRequest):
    model: str
    inputs: list[str]
    input_type: Literal["document", "query"] = "document"
    output: Literal["dense", "sparse", "multivector"] = "dense"
    dimensions: int | None = None
    normalize: bool | None = None
    truncate: bool = True
    top_k: int | None = None  # sparse: keep the k largest weights
    return_labels: bool = False  # sparse: the vocabulary token of each index


class SparseVector(msgspec.Struct, omit_defaults=True):
    indices: list[int]
    values: list[float]
    labels: list[str] | None = None


class EncodeResponse(msgspec.Struct):
    model: str
    output: str
    embeddings: list
    usage: Usage


class ScoreRequest(StrictRequest):
    model: str
    query: str
    documents: list[str]
    top_n: int | None = None
    raw_scores: bool = False
    truncate: bool = True


class ScoredDocument(msgspec.Struct):
    index: int
    score: float


class ScoreResponse(msgspec.Struct):
    model: str
    results: list[ScoredDocument]
    usage: Usage


class ClassifyRequest(StrictRequest):
    model: str
    inputs: list[str]
    truncate: bool = True
    labels: list[str] | None = None  # zero-shot models: the candidate labels
    multi_label: bool | None = None  # zero-shot: score each label on its own instead of one softmax over them
    hypothesis_template: str | None = None  # zero-shot: how a label is posed, "This example is {}." by default
    threshold: float | None = None  # zero-shot, GLiClass: leave out the labels scored below it


class ExtractRequest(StrictRequest):
    model: str
    inputs: list[str]
    truncate: bool = True
    labels: list[str] | None = None  # GLiNER models: the entity types to find
    threshold: float | None = None  # GLiNER: the lowest span score kept (0.5 by default)
    flat_ner: bool | None = None  # GLiNER: no overlapping entities (the default); false allows nested ones
    flat: bool | None = None  # the same as flat_ner
    multi_label: bool | None = None  # GLiNER: one span may carry several labels


class LabelScore(msgspec.Struct):
    label: str
    score: float


class Classification(msgspec.Struct):
    labels: list[LabelScore]


class ClassifyResponse(msgspec.Struct):
    model: str
    results: list[Classification]
    usage: Usage


class EntitySpan(msgspec.Struct):
    label: str
    text: str
    start: int
    end: int
    score: float


class Extraction(msgspec.Struct):
    entities: list[EntitySpan]


class ExtractResponse(msgspec.Struct):
    model: str
    results: list[Extraction]
    usage: Usage


class CompressRequest(StrictRequest):
    model: str
    context: str | None = None  # one text, or
    contexts: list[str] | None = None  # several, each compressed on its own
    rate: float | None = None  # token level: the share of (cl100k_base) tokens kept, in (0, 1]; 0.5 by default
    # token level: the lowest word keep probability kept; with a query: the lowest sentence score kept
    threshold: float | None = None
    force_tokens: list[str] | None = None  # token level: always kept (e.g. "\n", "?")
    query: str | None = None  # query-aware pruning with a reranker: sentences scored against it
    top_k: int | None = None  # with a query: keep the k best sentences
    return_scores: bool = False  # with a query: every sentence with its score and whether it was kept


class SentenceScore(msgspec.Struct):
    text: str
    start: int  # character offsets into the context
    end: int
    score: float
    kept: bool


class CompressedContext(msgspec.Struct, omit_defaults=True):
    compressed: str
    original_tokens: int
    kept_tokens: int
    sentences: list[SentenceScore] | None = None


class CompressResponse(msgspec.Struct, omit_defaults=True):
    """`compressed` joins the contexts with a blank line; the token counts (cl100k_base, what
    an LLM prompt costs) are their sums. `results` (with `contexts`) has each one's own."""

    model: str
    compressed: str
    original_tokens: int
    kept_tokens: int
    usage: Usage
    results: list[CompressedContext] | None = None
    sentences: list[SentenceScore] | None = None  # `context` with a query and return_scores


def _sentences(found) -> list[SentenceScore] | None:
    return None if found is None else [SentenceScore(s.text, s.start, s.end, s.score, s.kept) for s in found]


def compress_body(model: str, result, several: bool) -> CompressResponse:
    body = CompressResponse(model, result.compressed, result.original_tokens, result.kept_tokens,
                            Usage(result.input_tokens))
    if several:
        body.results = [CompressedContext(c.compressed, c.original_tokens, c.kept_tokens, _sentences(c.sentences))
                        for c in result.contexts]
    else:
        body.sentences = _sentences(result.contexts[0].sentences)
    return body


def embeddings_body(result) -> list:
    """An engine Encoded result in the native wire shape for its output kind."""
    if result.output == "sparse":
        labels = result.labels or [None] * len(result.embeddings)
        return [SparseVector(indices.tolist(), values.tolist(), names)
                for (indices, values), names in zip(result.embeddings, labels)]
    if result.output == "multivector":
        return [vectors.tolist() for vectors in result.embeddings]
    return result.embeddings.tolist()


class ModelEntry(msgspec.Struct):
    """OpenAI's model object, extended with Shoal's serving state. A model whose folder could not
    be read (state `failed`, `error` says why) has null for what only its folder could tell:
    bytes, capabilities, attention_backend, dimension, max_length, labels_at_request."""

    id: str
    object: str
    created: int
    owned_by: str
    state: str
    bytes: int | None
    capabilities: list[str] | None
    attention_backend: str | None
    dtype: str
    device: str
    dimension: int | None
    max_length: int | None
    loads: int
    evictions: int
    pinned: bool
    labels_at_request: bool | None  # takes its labels with each request (zero-shot classifiers, GLiNER)
    source: str | None = None
    last_used: float | None = None
    error: str | None = None


class ModelList(msgspec.Struct):
    object: str
    data: list[ModelEntry]


class ModelState(msgspec.Struct):
    model: str
    state: str


def model_list(engine: EngineAPI, created: int) -> ModelList:
    info = engine.info()
    return ModelList("list", [
        ModelEntry(id=m.name, object="model", created=created, owned_by="shoal", state=m.state, bytes=m.bytes,
                   capabilities=None if m.capabilities is None else list(m.capabilities),
                   attention_backend=m.backend, dtype=info.dtype,
                   device=info.device, dimension=m.dimension, max_length=m.max_length, loads=m.loads,
                   evictions=m.evictions, pinned=m.pinned, labels_at_request=m.labels_at_request, source=m.source, last_used=m.last_used, error=m.error)
        for m in engine.models()
    ])


class NativeController(Controller):
    path = "/v1"
    tags = ["native"]
    exception_handlers = {Exception: error_handler(native_shape)}

    @post("/encode", status_code=200, summary="Embed texts: dense, sparse or multivector", responses=errors(INFERENCE))
    async def encode(self, request: Request, data: EncodeRequest, engine: EngineAPI) -> Response[EncodeResponse]:
        spec = note_model(request, engine, data.model)
        result = await engine.encode(spec.name, data.inputs, input_type=data.input_type, output=data.output,
                                     dimensions=data.dimensions, normalize=data.normalize, truncate=data.truncate,
                                     deadline=deadline_from(request), top_k=data.top_k,
                                     return_labels=data.return_labels)
        body = EncodeResponse(spec.name, data.output, embeddings_body(result), Usage(result.input_tokens))
        return respond(request, body)

    @post("/score", status_code=200, summary="Rank documents against a query (cross-encoders, ColBERT MaxSim)",
          responses=errors(INFERENCE))
    async def score(self, request: Request, data: ScoreRequest, engine: EngineAPI) -> Response[ScoreResponse]:
        spec = note_model(request, engine, data.model)
        result = await engine.score(spec.name, data.query, data.documents, raw_scores=data.raw_scores,
                                    truncate=data.truncate, deadline=deadline_from(request))
        ranked = [ScoredDocument(i, result.scores[i]) for i in best_first(result.scores, data.top_n)]
        body = ScoreResponse(spec.name, ranked, Usage(result.input_tokens))
        return respond(request, body)

    @post("/classify", status_code=200, summary="Label each input (sequence classifiers; zero-shot with `labels`)",
          responses=errors(INFERENCE))
    async def classify(self, request: Request, data: ClassifyRequest, engine: EngineAPI) -> Response[ClassifyResponse]:
        spec = note_model(request, engine, data.model)
        result = await engine.classify(spec.name, data.inputs, truncate=data.truncate, deadline=deadline_from(request),
                                       labels=data.labels, multi_label=data.multi_label,
                                       hypothesis_template=data.hypothesis_template, threshold=data.threshold)
        floor = -1.0 if result.threshold is None else result.threshold
        results = [Classification([LabelScore(result.labels[i], float(row[i])) for i in best_first(row)
                                   if row[i] >= floor]) for row in result.probabilities]
        return respond(request, ClassifyResponse(spec.name, results, Usage(result.input_tokens)))

    @post("/extract", status_code=200, summary="Entity spans in each input (token classifiers; GLiNER with `labels`)",
          responses=errors(INFERENCE))
    async def extract(self, request: Request, data: ExtractRequest, engine: EngineAPI) -> Response[ExtractResponse]:
        spec = note_model(request, engine, data.model)
        if data.flat is not None and data.flat_ner is not None and data.flat != data.flat_ner:
            raise ApiError(422, "invalid_request", "flat and flat_ner are the same setting; send one")
        result = await engine.extract(spec.name, data.inputs, truncate=data.truncate, deadline=deadline_from(request),
                                      labels=data.labels, threshold=data.threshold,
                                      flat_ner=data.flat if data.flat_ner is None else data.flat_ner,
                                      multi_label=data.multi_label)
        results = [Extraction([EntitySpan(e.label, e.text, e.start, e.end, e.score) for e in found])
                   for found in result.entities]
        return respond(request, ExtractResponse(spec.name, results, Usage(result.input_tokens)))

    @post("/compress", status_code=200, responses=errors(INFERENCE),
          summary="Shorten contexts: token-level (LLMLingua-2 token classifiers) or by a query (rerankers)")
    async def compress(self, request: Request, data: CompressRequest, engine: EngineAPI) -> Response[CompressResponse]:
        spec = note_model(request, engine, data.model)
        if (data.context is None) == (data.contexts is None):
            raise ApiError(422, "invalid_request", "send `context` (one text) or `contexts` (a list of texts), "
                                                   "exactly one of them")
        several = data.contexts is not None
        result = await engine.compress(  # type: ignore[attr-defined]
            spec.name, data.contexts if several else [data.context], rate=data.rate, threshold=data.threshold,
            force_tokens=data.force_tokens, query=data.query, top_k=data.top_k, return_scores=data.return_scores,
            deadline=deadline_from(request))
        return respond(request, compress_body(spec.name, result, several))

    @get("/models", summary="Models this server can serve, with their state", responses=errors(LISTING))
    async def models(self, request: Request, engine: EngineAPI, started_at: int) -> Response[ModelList]:
        return respond(request, model_list(engine, started_at))

    @post("/models/{name:str}/load", status_code=200, summary="Load a model onto the device now",
          responses=errors(LOAD), opt={"operator": True})
    async def load(self, request: Request, name: str, engine: EngineAPI) -> Response[ModelState]:
        spec = note_model(request, engine, name)
        return respond(request, ModelState(spec.name, await engine.load(spec.name)))

    @post("/models/{name:str}/unload", status_code=200, summary="Release a model's device memory",
          responses=errors(UNLOAD), opt={"operator": True})
    async def unload(self, request: Request, name: str, engine: EngineAPI) -> Response[ModelState]:
        spec = note_model(request, engine, name)
        return respond(request, ModelState(spec.name, await engine.unload(spec.name)))
