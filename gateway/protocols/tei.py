"""Hugging Face text-embeddings-inference, mounted per model under `/tei/{model}`:
/embed, /embed_all, /embed_sparse, /rerank, /predict, /tokenize, /info, with TEI's
`{"error", "error_type"}` bodies. Chroma's HuggingFaceEmbeddingServer and Weaviate's
text2vec-huggingface point at `/tei/{model}/embed`."""

from __future__ import annotations

from functools import partial
from typing import Any, Literal

import msgspec
from litestar import Controller, Request, Response, get, post

from engine import EngineAPI

from .. import __version__
from ..errors import ApiError, error_handler
from ..openapi import INFERENCE, MODEL_INFO, error_responses
from ..wire import respond
from .common import best_first, deadline_from, note_model, texts_of

# TEI's error types, keyed by the status the gateway chose
ERROR_TYPES = {400: "Empty", 413: "Validation", 422: "Validation", 429: "Overloaded", 503: "Unhealthy",
               504: "Backend", 500: "Backend"}


class TEIError(msgspec.Struct):
    """TEI's error body, as tei_shape writes it."""

    error: str
    error_type: Literal["Validation", "Overloaded", "Unhealthy", "Backend", "Tokenizer", "Empty"]


def tei_shape(error: ApiError) -> dict:
    if error.kind == "empty":
        error_type = "Empty"
    elif error.kind in ("malformed_request", "not_found", "model_not_found", "unauthorized", "forbidden"):
        error_type = "Validation"
    else:
        error_type = ERROR_TYPES.get(error.status, "Backend")
    return {"error": error.message, "error_type": error_type}


# `responses=` for this controller's routes: the statuses each can answer, in TEI's error body
errors = partial(error_responses, TEIError, tei_shape)


class EmbedRequest(msgspec.Struct):
    inputs: Any  # str | [str]
    truncate: bool | None = None
    truncation_direction: Literal["Right", "Left", "right", "left"] = "Right"
    prompt_name: str | None = None
    normalize: bool = True
    dimensions: int | None = None
    options: dict | None = None  # Weaviate's text2vec-huggingface sends {"options": {}}


class RerankRequest(msgspec.Struct):
    query: str
    texts: list[str]
    truncate: bool | None = None
    truncation_direction: Literal["Right", "Left", "right", "left"] = "Right"
    raw_scores: bool = False
    return_text: bool = False


class Rank(msgspec.Struct, omit_defaults=True):
    index: int
    score: float
    text: str | None = None


class PredictRequest(msgspec.Struct):
    inputs: Any  # str | [str, str] | [[str] | [str, str]]
    truncate: bool | None = None
    raw_scores: bool = False


class Prediction(msgspec.Struct):
    score: float
    label: str


class TokenizeRequest(msgspec.Struct):
    inputs: Any  # str | [str]
    add_special_tokens: bool = True


class SimpleToken(msgspec.Struct):
    id: int
    text: str
    special: bool
    start: int | None
    stop: int | None


class SparseValue(msgspec.Struct):
    index: int
    value: float


def _texts(inputs: Any) -> list[str]:
    if inputs == []:  # TEI answers an empty batch with its own "Empty" error
        raise ApiError(400, "empty", "`inputs` cannot be empty")
    return texts_of(inputs, "inputs")


def _truncation(truncate: bool | None, direction: str) -> bool:
    if direction.lower() == "left" and truncate is not False:
        raise ApiError(422, "invalid_request", "truncation_direction 'Left' is not supported; use 'Right'")
    return True if truncate is None else truncate


def _input_type(spec, prompt_name: str | None) -> str:
    if prompt_name is None:
        return "document"
    aliases = {"query": "query", "document": "document", "passage": "document"}
    if prompt_name in aliases:
        return aliases[prompt_name]
    raise ApiError(422, "invalid_request",
                   f"prompt_name {prompt_name!r} is not known; use 'query' or 'document' "
                   f"(model prompts: {sorted(spec.prompts)})")


class TEIController(Controller):
    path = "/tei/{model:str}"
    tags = ["tei"]
    exception_handlers = {Exception: error_handler(tei_shape)}

    @post("/embed", status_code=200, summary="TEI: dense embeddings, [[float]]", responses=errors(INFERENCE))
    async def embed(self, request: Request, model: str, data: EmbedRequest, engine: EngineAPI) -> Response:
        spec = note_model(request, engine, model)
        texts = _texts(data.inputs)
        result = await engine.encode(spec.name, texts, input_type=_input_type(spec, data.prompt_name),
                                     dimensions=data.dimensions, normalize=data.normalize,
                                     truncate=_truncation(data.truncate, data.truncation_direction),
                                     deadline=deadline_from(request))
        return respond(request, result.embeddings.tolist())

    @post("/embed_all", status_code=200, summary="TEI: token-level embeddings (ColBERT models)",
          responses=errors(INFERENCE))
    async def embed_all(self, request: Request, model: str, data: EmbedRequest, engine: EngineAPI) -> Response:
        spec = note_model(request, engine, model)
        texts = _texts(data.inputs)
        result = await engine.encode(spec.name, texts, input_type=_input_type(spec, data.prompt_name),
                                     output="multivector", truncate=_truncation(data.truncate, data.truncation_direction),
                                     deadline=deadline_from(request))
        return respond(request, [vectors.tolist() for vectors in result.embeddings])

    @post("/embed_sparse", status_code=200, summary="TEI: sparse embeddings, [[{index, value}]]",
          responses=errors(INFERENCE))
    async def embed_sparse(self, request: Request, model: str, data: EmbedRequest, engine: EngineAPI) -> Response:
        spec = note_model(request, engine, model)
        texts = _texts(data.inputs)
        result = await engine.encode(spec.name, texts, input_type=_input_type(spec, data.prompt_name),
                                     output="sparse", truncate=_truncation(data.truncate, data.truncation_direction),
                                     deadline=deadline_from(request))
        body = [[SparseValue(int(i), float(v)) for i, v in zip(indices, values)]
                for indices, values in result.embeddings]
        return respond(request, body)

    @post("/rerank", status_code=200, summary="TEI: rerank texts against a query, sorted by score",
          responses=errors(INFERENCE))
    async def rerank(self, request: Request, model: str, data: RerankRequest, engine: EngineAPI) -> Response:
        spec = note_model(request, engine, model)
        if not data.texts:
            raise ApiError(400, "empty", "`texts` cannot be empty")
        result = await engine.score(spec.name, data.query, data.texts, raw_scores=data.raw_scores,
                                    truncate=_truncation(data.truncate, data.truncation_direction),
                                    deadline=deadline_from(request))
        body = [Rank(i, result.scores[i], data.texts[i] if data.return_text else None)
                for i in best_first(result.scores)]
        return respond(request, body)

    @post("/predict", status_code=200, summary="TEI: sequence classification, or pair scores for rerankers",
          responses=errors(INFERENCE))
    async def predict(self, request: Request, model: str, data: PredictRequest, engine: EngineAPI) -> Response:
        spec = note_model(request, engine, model)
        batched, items = _predict_items(data.inputs)
        truncate = True if data.truncate is None else data.truncate
        if "classify" in spec.capabilities:
            if data.raw_scores:
                raise ApiError(422, "invalid_request", "raw_scores is not supported for classifiers")
            if len({len(item) for item in items}) != 1:
                raise ApiError(422, "invalid_request", "send all single texts or all pairs")
            if spec.task == "zero_shot" and len(items[0]) == 1:  # TEI has no labels field: pairs only
                raise ApiError(422, "invalid_request", f"model {spec.name!r} is a zero-shot (NLI) classifier: "
                                                       "send (premise, hypothesis) pairs, or use /v1/classify "
                                                       "with `labels`")
            texts = [item[0] for item in items] if len(items[0]) == 1 else items
            result = await engine.classify(spec.name, texts, truncate=truncate, deadline=deadline_from(request))
            predictions = [[Prediction(float(row[i]), result.labels[i]) for i in best_first(row)]
                           for row in result.probabilities]
        elif "score" in spec.capabilities:
            if any(len(item) != 2 for item in items):
                raise ApiError(422, "invalid_request", f"model {spec.name!r} scores (text, text) pairs")
            result = await engine.score_pairs(spec.name, items, raw_scores=data.raw_scores, truncate=truncate,
                                              deadline=deadline_from(request))
            label = (spec.labels or ("LABEL_0",))[0]
            predictions = [[Prediction(score, label)] for score in result.scores]
        else:
            raise ApiError(422, "invalid_request", f"model {spec.name!r} ({spec.task}) cannot predict")
        return respond(request, predictions if batched else predictions[0])

    @post("/tokenize", status_code=200, summary="TEI: the model's tokens for each input", responses=errors(INFERENCE))
    async def tokenize(self, request: Request, model: str, data: TokenizeRequest, engine: EngineAPI) -> Response:
        spec = note_model(request, engine, model)
        texts = _texts(data.inputs)
        tokenized = await engine.tokenize(spec.name, texts, add_special_tokens=data.add_special_tokens)
        body = [[SimpleToken(t.id, t.text, t.special, *(t.span or (None, None))) for t in tokens]
                for tokens in tokenized]
        return respond(request, body)

    @get("/info", summary="TEI: what this model is and the server's limits", responses=errors(MODEL_INFO))
    async def info(self, request: Request, model: str, engine: EngineAPI) -> Response:
        spec = note_model(request, engine, model)
        info = engine.info()
        if spec.task in ("score", "causal_rerank", "classify", "zero_shot"):
            labels = spec.labels or ("LABEL_0",)
            kind = "classifier" if "classify" in spec.capabilities else "reranker"
            model_type: dict = {kind: {"id2label": {str(i): label for i, label in enumerate(labels)},
                                       "label2id": {label: i for i, label in enumerate(labels)}}}
        else:
            model_type = {"embedding": {"pooling": spec.pooling}}
        return respond(request, {
            "model_id": spec.source or spec.name,
            "model_sha": None,
            "model_dtype": info.dtype,
            "model_type": model_type,
            "max_concurrent_requests": 512,
            "max_input_length": spec.max_length,
            "max_batch_tokens": info.max_batch_tokens,
            "max_batch_requests": None,
            "max_client_batch_size": info.max_inputs,
            "auto_truncate": True,
            "tokenization_workers": info.tokenizer_threads,
            "version": __version__,
            "sha": None,
            "docker_label": None,
            "prompts": spec.prompts or None,
        })


def _predict_items(inputs: Any) -> tuple[bool, list[list[str]]]:
    """TEI's /predict input: "text" | ["a", "b"] (one pair) | [["t"], ["a", "b"], ...] (a batch)."""
    if isinstance(inputs, str):
        return False, [[inputs]]
    if isinstance(inputs, list) and inputs and all(isinstance(x, str) for x in inputs):
        if len(inputs) > 2:
            raise ApiError(422, "invalid_request", "a single /predict input is a text or a pair of texts")
        return False, [inputs]
    if isinstance(inputs, list) and inputs and all(
            isinstance(x, list) and 1 <= len(x) <= 2 and all(isinstance(t, str) for t in x) for x in inputs):
        return True, inputs
    if isinstance(inputs, list) and not inputs:
        raise ApiError(400, "empty", "`inputs` cannot be empty")
    raise ApiError(422, "invalid_request", "`inputs` must be a text, a pair of texts, or a list of those")
