"""Weaviate's inference-container protocols, mounted per model under `/weaviate/{model}`:
text2vec-transformers (`/vectors`, `/meta`, `/.well-known/ready|live`),
reranker-transformers (`/rerank`) and ner-transformers (`/ner/`). Weaviate sends one text per
`/vectors` and `/ner/` request, so the engine's cross-request batching is what makes imports
and queries fast.

ner-transformers (wire format read off weaviate/weaviate modules/ner-transformers/clients/
ner.go, ner_meta.go and startup.go, and the reference container weaviate/ner-transformers-models):
Weaviate posts `{"text"}` (no Content-Type) and decodes `{"text", "tokens": [{"entity",
"certainty", "word", "startPosition", "endPosition"}]}`, or on a status > 399 the `error`
string; it drops tokens under the query's certainty itself. The reference container runs the
transformers pipeline without aggregation (one token per word piece, entity "I-PER", word
"##lin"); Shoal answers one token per entity span, the pipeline's aggregation "simple"
(entity "PER", certainty the mean over the span's pieces, word the exact input substring),
the same fields. GLiNER models need labels with each request, which the module never sends: 422."""

from __future__ import annotations

from functools import partial

import msgspec
from litestar import Controller, Request, Response, get, post

from engine import EngineAPI

from ..errors import ApiError, error_handler
from ..openapi import INFERENCE, MODEL_INFO, error_responses
from ..wire import respond
from .common import deadline_from, note_model

# Weaviate's pooling names -> the engine's pooling modes
POOLINGS = {"masked_mean": "mean", "mean": "mean", "cls": "cls"}
TASK_TYPES = {"passage": "document", "document": "document", "query": "query"}


class WeaviateError(msgspec.Struct):
    """The inference containers' error body, as weaviate_shape writes it."""

    error: str


def weaviate_shape(error: ApiError) -> dict:
    return {"error": error.message}


# `responses=` for this controller's routes: the statuses each can answer, in Weaviate's error body
errors = partial(error_responses, WeaviateError, weaviate_shape)


class VectorizeConfig(msgspec.Struct):
    pooling_strategy: str | None = None
    task_type: str | None = None
    dimensions: int | None = None


class VectorizeRequest(msgspec.Struct):
    """One text (`text`, every Weaviate version) or a batch (`texts`, newer Weaviate's batch
    vectorizer, which expects `{"vectors", "dims"}` back)."""

    text: str | None = None
    texts: list[str] | None = None
    dims: int | None = None
    vector: list[float] | None = None
    error: str | None = None
    config: VectorizeConfig | None = None


class VectorizeResponse(msgspec.Struct):
    text: str
    vector: list[float]
    dim: int  # the reference container's name
    dims: int  # the name Weaviate's Go client decodes


class BatchVectorizeResponse(msgspec.Struct):
    vectors: list[list[float]]
    dims: int


class RerankRequest(msgspec.Struct):
    query: str
    documents: list[str]
    property: str | None = None


class DocumentScore(msgspec.Struct):
    document: str
    score: float


class RerankResponse(msgspec.Struct):
    query: str
    scores: list[DocumentScore]
    property: str | None = None
    score: float | None = None


class NerRequest(msgspec.Struct):
    """What the ner-transformers module posts: the text of one property of one object."""

    text: str


class NerToken(msgspec.Struct):
    """One entity, in the names Weaviate's Go client decodes."""

    entity: str  # the label, without its B-/I- prefix
    certainty: float  # the span's score (mean over its word pieces)
    word: str  # the span's text, exactly as in the input
    start_position: int = msgspec.field(name="startPosition")  # character offsets into `text`
    end_position: int = msgspec.field(name="endPosition")


class NerResponse(msgspec.Struct):
    text: str
    tokens: list[NerToken]


def _input_type(config: VectorizeConfig) -> str:
    if not config.task_type:
        return "document"
    if config.task_type not in TASK_TYPES:
        raise ApiError(422, "invalid_request",
                       f"config.task_type must be 'passage' or 'query', got {config.task_type!r}")
    return TASK_TYPES[config.task_type]


def _pooling(config: VectorizeConfig) -> str | None:
    """Weaviate's pooling_strategy as the engine's per-request pooling (None: the model's own)."""
    if not config.pooling_strategy:
        return None
    if config.pooling_strategy not in POOLINGS:
        raise ApiError(422, "invalid_request", f"config.pooling_strategy must be one of {sorted(POOLINGS)}, "
                                               f"got {config.pooling_strategy!r}")
    return POOLINGS[config.pooling_strategy]


class WeaviateController(Controller):
    path = "/weaviate/{model:str}"
    tags = ["weaviate"]
    exception_handlers = {Exception: error_handler(weaviate_shape)}

    @get("/.well-known/ready", status_code=204, summary="Readiness probe of a Weaviate inference container",
         responses=errors(MODEL_INFO + (503,)))
    async def ready(self, request: Request, model: str, engine: EngineAPI) -> None:
        note_model(request, engine, model)
        if not engine.ready:
            raise ApiError(503, "not_ready", "the engine is not ready")

    @get("/.well-known/live", status_code=204, summary="Liveness probe of a Weaviate inference container",
         responses=errors(MODEL_INFO))
    async def live(self, request: Request, model: str, engine: EngineAPI) -> None:
        note_model(request, engine, model)

    @get("/meta", summary="The model's configuration, as the reference container reports it",
         responses=errors(MODEL_INFO))
    async def meta(self, request: Request, model: str, engine: EngineAPI) -> Response:
        spec = note_model(request, engine, model)
        return respond(request, {"model": spec.config, "model_path": spec.source or spec.name})

    @post(["/vectors", "/vectors/"], status_code=200, summary="text2vec-transformers: one text -> one vector",
          responses=errors(INFERENCE))
    async def vectors(self, request: Request, model: str, data: VectorizeRequest, engine: EngineAPI) -> Response:
        spec = note_model(request, engine, model)
        config = data.config or VectorizeConfig()
        input_type = _input_type(config)
        pooling = _pooling(config)
        if data.texts is not None:
            texts = data.texts
        elif data.text is not None:
            texts = [data.text]
        else:
            raise ApiError(422, "invalid_request", "the body needs `text` (a string) or `texts` (a list of strings)")
        result = await engine.encode(spec.name, texts, input_type=input_type, dimensions=config.dimensions or None,
                                     pooling=pooling, deadline=deadline_from(request))
        vectors = result.embeddings.tolist()
        dims = result.embeddings.shape[1]
        if data.texts is not None:
            return respond(request, BatchVectorizeResponse(vectors, dims))
        return respond(request, VectorizeResponse(texts[0], vectors[0], dims, dims))

    @post("/rerank", status_code=200, summary="reranker-transformers: one score per document, in input order",
          responses=errors(INFERENCE))
    async def rerank(self, request: Request, model: str, data: RerankRequest, engine: EngineAPI) -> Response[RerankResponse]:
        spec = note_model(request, engine, model)
        result = await engine.score(spec.name, data.query, data.documents, deadline=deadline_from(request))
        scores = [DocumentScore(document, score) for document, score in zip(data.documents, result.scores)]
        return respond(request, RerankResponse(data.query, scores))

    @post(["/ner", "/ner/"], status_code=200,
          summary="ner-transformers: the entities in one text (token-classification models)",
          responses=errors(INFERENCE))
    async def ner(self, request: Request, model: str, data: NerRequest, engine: EngineAPI) -> Response[NerResponse]:
        spec = note_model(request, engine, model)
        if spec.task == "gliner":
            raise ApiError(422, "unsupported_output",
                           f"model {spec.name!r} is a GLiNER model: it finds the entity types named in each "
                           f"request, and Weaviate's ner-transformers module sends only the text, no labels; "
                           f"serve a token-classification model (labels in its config) here, or call /v1/extract "
                           f"with labels")
        if "extract" not in spec.capabilities:
            raise ApiError(422, "unsupported_output",
                           f"model {spec.name!r} ({spec.task}) tags no entities: ner-transformers needs a "
                           f"token-classification model")
        if not data.text:  # the reference container's answer (Weaviate itself never sends an empty text)
            return respond(request, NerResponse(data.text, []))
        result = await engine.extract(spec.name, [data.text], deadline=deadline_from(request))
        tokens = [NerToken(e.label, e.score, e.text, e.start, e.end) for e in result.entities[0]]
        return respond(request, NerResponse(data.text, tokens))
