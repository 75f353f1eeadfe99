"""Shoal's native API: /v1/encode and model management. JSON or msgpack."""

from __future__ import annotations

from typing import Literal

import msgspec
from litestar import Controller, Request, Response, get, post

from engine import Engine

from ..errors import error_handler, native_shape
from ..wire import respond
from .common import deadline_from, note_model


class Usage(msgspec.Struct):
    input_tokens: int


class EncodeRequest(msgspec.Struct):
    model: str
    inputs: list[str]
    input_type: Literal["document", "query"] = "document"
    output: Literal["dense", "sparse", "multivector"] = "dense"
    dimensions: int | None = None
    normalize: bool | None = None
    truncate: bool = True


class EncodeResponse(msgspec.Struct):
    model: str
    output: str
    embeddings: list
    usage: Usage


class ModelEntry(msgspec.Struct):
    """OpenAI's model object, extended with Shoal's serving state."""

    id: str
    object: str
    created: int
    owned_by: str
    state: str
    bytes: int
    capabilities: list[str]
    attention_backend: str
    dtype: str
    device: str
    dimension: int
    max_length: int
    loads: int
    pinned: bool
    source: str | None = None
    last_used: float | None = None
    error: str | None = None


class ModelList(msgspec.Struct):
    object: str
    data: list[ModelEntry]


class ModelState(msgspec.Struct):
    model: str
    state: str


def model_list(engine: Engine, created: int) -> ModelList:
    dtype = str(engine.dtype).removeprefix("torch.")
    return ModelList("list", [
        ModelEntry(id=m.name, object="model", created=created, owned_by="shoal", state=m.state, bytes=m.bytes,
                   capabilities=list(m.capabilities), attention_backend=engine.attention_name, dtype=dtype,
                   device=str(engine.device), dimension=m.dimension, max_length=m.max_length, loads=m.loads,
                   pinned=m.pinned, source=m.source, last_used=m.last_used, error=m.error)
        for m in engine.models()
    ])


class NativeController(Controller):
    path = "/v1"
    tags = ["native"]
    exception_handlers = {Exception: error_handler(native_shape)}

    @post("/encode", status_code=200, summary="Embed texts: dense, sparse or multivector")
    async def encode(self, request: Request, data: EncodeRequest, engine: Engine) -> Response[EncodeResponse]:
        spec = note_model(request, engine, data.model)
        result = await engine.encode(spec.name, data.inputs, input_type=data.input_type, output=data.output,
                                     dimensions=data.dimensions, normalize=data.normalize, truncate=data.truncate,
                                     deadline=deadline_from(request))
        body = EncodeResponse(spec.name, data.output, result.embeddings.tolist(), Usage(result.input_tokens))
        return respond(request, body)

    @get("/models", summary="Models this server can serve, with their state")
    async def models(self, request: Request, engine: Engine, started_at: int) -> Response[ModelList]:
        return respond(request, model_list(engine, started_at))

    @post("/models/{name:str}/load", status_code=200, summary="Load a model onto the device now")
    async def load(self, request: Request, name: str, engine: Engine) -> Response[ModelState]:
        spec = note_model(request, engine, name)
        await engine.load(spec.name)
        return respond(request, ModelState(spec.name, engine.pool.entries[spec.name].state))

    @post("/models/{name:str}/unload", status_code=200, summary="Release a model's device memory")
    async def unload(self, request: Request, name: str, engine: Engine) -> Response[ModelState]:
        spec = note_model(request, engine, name)
        await engine.unload(spec.name)
        return respond(request, ModelState(spec.name, engine.pool.entries[spec.name].state))
