"""The error responses each route declares in /schema/openapi.json: every status the route
can answer, each with the body its protocol's client reads. Without these, Litestar
documents its own `{"detail", "status_code"}` 400, which no route sends, and a client
generated from the schema mis-reads every error."""

from __future__ import annotations

from typing import Any, Callable, Iterable

import msgspec
from litestar._openapi.schema_generation.plugins.struct import StructSchemaPlugin
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import Example, Schema
from litestar.typing import FieldDefinition

from .errors import ApiError

# What each status means, for every protocol alike (the statuses are decided in errors.as_api_error)
DESCRIPTIONS = {
    400: "Malformed request: an empty or undecodable JSON/msgpack body (bad syntax, nesting too deep, "
         "invalid UTF-8), or an X-Shoal-Deadline-Ms that is not a number",
    401: "Missing or invalid bearer key (only when the server has keys)",
    403: "An inference key on an operator route (only when operator keys are set)",
    404: "The model is not served here",
    409: "The model is pinned or busy",
    413: "The body, the number of inputs, or their size is over the server's limits",
    415: "The body is not JSON or msgpack (its Content-Type says so)",
    422: "Well-formed but invalid: a wrong type, a missing field, a value out of range, or an input too long "
         "with truncation off",
    429: "The queue is full; retry after the Retry-After header's seconds",
    503: "Not ready, or the model cannot load or fit in memory",
    504: "The request's deadline (X-Shoal-Deadline-Ms) or the load timeout passed",
}
# A representative error kind per status, to render each example through the real shape function
EXAMPLE_KINDS = {400: "malformed_request", 401: "unauthorized", 403: "forbidden", 404: "model_not_found", 409: "conflict", 413: "too_many_inputs", 415: "unsupported_media_type",
                 422: "invalid_request", 429: "overloaded", 503: "not_ready", 504: "deadline_exceeded"}

# Status sets by kind of route
INFERENCE = (400, 401, 404, 413, 415, 422, 429, 503, 504)  # a body naming inputs for a model
MODEL_INFO = (400, 401, 404)  # a GET naming a model in its path (Litestar counts the path parameter as a possible 400)
LISTING = (401,)
LOAD = (400, 401, 403, 404, 503, 504)
UNLOAD = (400, 401, 403, 404, 409)


def error_responses(body: type[msgspec.Struct], shape: Callable[[ApiError], Any],
                    statuses: Iterable[int]) -> dict[int, ResponseSpec]:
    """`responses=` for a route decorator: each status with `body` (the protocol's error
    Struct) and an example rendered by `shape`, the function that writes that body on the wire."""
    responses = {}
    for status in statuses:
        example = shape(ApiError(status, EXAMPLE_KINDS[status], DESCRIPTIONS[status]))
        responses[status] = ResponseSpec(data_container=body, description=DESCRIPTIONS[status],
                                         generate_examples=False, examples=[Example(value=example)])
    return responses


class StrictStructSchema(StructSchemaPlugin):
    """Litestar's schema for a msgspec Struct, with `additionalProperties: false` where the Struct
    forbids unknown fields (the native API's request bodies): the schema says what the server
    enforces, and a client generated from it cannot send a misspelt field."""

    def is_plugin_supported_field(self, field_definition: FieldDefinition) -> bool:
        return (super().is_plugin_supported_field(field_definition)
                and field_definition.type_.__struct_config__.forbid_unknown_fields)

    def to_openapi_schema(self, field_definition: FieldDefinition, schema_creator: Any) -> Schema:
        schema = super().to_openapi_schema(field_definition, schema_creator)
        schema.additional_properties = False
        return schema
