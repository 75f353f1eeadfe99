"""Schema-driven fuzzing of the real server on loopback: schemathesis reads /schema/openapi.json and sends
generated requests, valid and invalid, to every operation. None may answer 5xx or hang, every answer must be one
the schema documents (status, content type, body), and the server keeps serving. Then the hostile bodies that
used to answer 500 (deep nesting, invalid UTF-8, out-of-range numbers, wrong types), on every protocol's route:
a 4xx in that protocol's error shape, and the server still serving. And the refusals of the bearer-key
middleware, which the fuzzing server (no keys) never sends, as documented on every route."""

from __future__ import annotations

import httpx
import msgspec
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode

from engine import Engine, EngineConfig, EngineError
from gateway.app import GatewaySettings
from gateway.errors import ApiError, NativeError, OpenAIError, as_api_error, native_shape, openai_shape
from gateway.openapi import DESCRIPTIONS
from gateway.protocols.cohere import CohereError, cohere_shape
from gateway.protocols.jina import JinaError, jina_shape
from gateway.protocols.ollama import OllamaError, ollama_shape
from gateway.protocols.tei import TEIError, tei_shape
from gateway.protocols.weaviate import WeaviateError, weaviate_shape
from tests.conftest import LiveServer, zoo_specs

MINILM = "all-MiniLM-L6-v2"
TASK_MODELS = ("rerank", "intent", "ner", "splade", "colbert")
# Names the generated requests use: every served model, so requests get past 404, and one unknown name, whose
# 404 must conform too. Free text would mostly miss, and a `/` in a path name changes the route, not the model.
MODEL_NAMES = (MINILM, *TASK_MODELS, "no-such-model")
CALL_TIMEOUT = 30  # seconds; a request that takes longer has hung (the first call to a model loads it)


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory, minilm_spec):
    """`shoal serve` with the real MiniLM and a tiny model for every task, so every route has a model that
    can answer it."""
    specs = [minilm_spec] + zoo_specs(tmp_path_factory.mktemp("fuzz-zoo"), TASK_MODELS)
    with LiveServer(Engine(specs, EngineConfig(device="cpu", dtype="float32", max_inputs_per_request=64))) as live:
        yield live


@pytest.fixture(scope="module")
def api_schema(fuzz_server):
    schema = schemathesis.openapi.from_url(fuzz_server.url + "/schema/openapi.json")

    @schema.hook
    def flatmap_path_parameters(context, path_parameters):
        if not isinstance(path_parameters, dict):  # a negative case may leave them out
            return st.just(path_parameters)
        names = {key for key in ("model", "name") if key in path_parameters}
        return st.sampled_from(MODEL_NAMES).map(lambda name: {**path_parameters, **dict.fromkeys(names, name)})

    @schema.hook
    def flatmap_body(context, body):
        # only a string `model` is replaced: a negative case's wrong type stays wrong
        if isinstance(body, dict) and isinstance(body.get("model"), str):
            return st.sampled_from(MODEL_NAMES).map(lambda name: {**body, "model": name})
        return st.just(body)

    return schema


CHECKS = [schemathesis.checks.not_a_server_error, schemathesis.checks.status_code_conformance,
          schemathesis.checks.content_type_conformance, schemathesis.checks.response_schema_conformance]
EXAMPLES_PER_OPERATION = 20


def _body(**body) -> dict:
    return {"body": body}


def _at(model: str, **body) -> dict:
    """A request to a route mounted per model (TEI, Weaviate)."""
    return {"path_parameters": {"model": model}, "body": body}


# Requests that must succeed, tried first on each route: generated bodies rarely pick the right model for the
# task and non-empty inputs, and the documented 200 body of every route must be checked against a real one
VALID = {
    "POST /v1/encode": [_body(model=MINILM, inputs=["a river"]),
                        _body(model="splade", inputs=["a river"], output="sparse", return_labels=True),
                        _body(model="colbert", inputs=["a river"], output="multivector")],
    "POST /v1/score": [_body(model="rerank", query="q", documents=["a", "b"], top_n=1),
                       _body(model="colbert", query="q", documents=["a"])],
    "POST /v1/classify": [_body(model="intent", inputs=["hello there"])],
    "POST /v1/extract": [_body(model="ner", inputs=["Ada lives in Paris"])],
    "POST /v1/compress": [_body(model="rerank", context="A river. A lake!\nA sea?", query="q", top_k=2,
                                return_scores=True),
                          _body(model="rerank", contexts=["A river. A lake!", "A sea"], query="q", threshold=0.0)],
    "POST /v1/models/{name}/load": [{"path_parameters": {"name": "splade"}}],
    "POST /v1/models/{name}/unload": [{"path_parameters": {"name": "splade"}}],
    "POST /v1/embeddings": [_body(model=MINILM, input="a river"),
                            _body(model=MINILM, input=["a", "b"], encoding_format="base64")],
    "POST /v1/multi-vector": [_body(model="colbert", input=["a river"], dimensions=8)],
    "POST /v1/rerank": [_body(model="rerank", query="q", documents=["a", {"text": "b"}])],
    "POST /v2/embed": [_body(model=MINILM, texts=["a"], embedding_types=["float", "base64"])],
    "POST /v2/rerank": [_body(model="rerank", query="q", documents=["a", "b"], top_n=1)],
    "POST /api/embed": [_body(model=MINILM, input="a river")],
    "POST /api/embeddings": [_body(model=MINILM, prompt="a river")],
    "POST /tei/{model}/embed": [_at(MINILM, inputs=["a river"])],
    "POST /tei/{model}/embed_all": [_at("colbert", inputs="a river")],
    "POST /tei/{model}/embed_sparse": [_at("splade", inputs=["a river"])],
    "POST /tei/{model}/rerank": [_at("rerank", query="q", texts=["a", "b"], return_text=True)],
    "POST /tei/{model}/predict": [_at("intent", inputs="hello"), _at("rerank", inputs=[["q", "a"], ["q", "b"]])],
    "POST /tei/{model}/tokenize": [_at(MINILM, inputs=["a river"])],
    "POST /weaviate/{model}/vectors": [_at(MINILM, text="a river"),
                                       _at(MINILM, texts=["a", "b"], config={"task_type": "query"})],
    "POST /weaviate/{model}/rerank": [_at("rerank", query="q", documents=["a", "b"])],
    "POST /weaviate/{model}/ner": [_at("ner", text="Ada lives in Paris")],
}


def test_every_operation_answers_as_documented(api_schema, fuzz_server, subtests):
    # schemathesis' own pytest integration (`from_fixture` + `parametrize`) breaks on pytest 9's node ids, so each
    # operation runs its own Hypothesis test here, as a subtest
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert set(VALID) == {op.label for op in operations if op.method.upper() == "POST"}  # every POST route's 200
    for operation in operations:
        with subtests.test(operation=operation.label):
            _fuzz(operation, fuzz_server.url)


def _fuzz(operation, url: str) -> None:
    """The operation's valid examples, then generated requests: valid ones, and invalid ones where it takes a
    body or parameters."""
    modes = [GenerationMode.POSITIVE]
    if operation.body or operation.path_parameters:
        modes.append(GenerationMode.NEGATIVE)
    valid = [operation.Case(**request) for request in VALID.get(operation.label, ())]

    @given(case=st.one_of(*(operation.as_strategy(generation_mode=mode) for mode in modes)))
    @settings(max_examples=EXAMPLES_PER_OPERATION, derandomize=True, deadline=None, database=None,
              phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    def run(case):
        response = case.call(timeout=CALL_TIMEOUT)
        case.validate_response(response, checks=CHECKS)
        if any(case is known for known in valid):
            assert response.status_code == 200, response.text[:300]
        assert httpx.get(url + "/healthz", timeout=5).status_code == 200

    for case in valid:
        run = example(case=case)(run)
    run()


# ---- hostile bodies, by hand --------------------------------------------------------------
# Each protocol: a route (its OpenAPI path; `{model}` is MiniLM), a valid body, where its `dimensions`-like number
# goes, and the Struct its error body must decode as
ROUTES = {
    "native": ("/v1/encode", {"model": MINILM, "inputs": ["a"]}, lambda n: {"dimensions": n}, NativeError),
    "openai": ("/v1/embeddings", {"model": MINILM, "input": ["a"]}, lambda n: {"dimensions": n}, OpenAIError),
    "tei": ("/tei/{model}/embed", {"inputs": ["a"]}, lambda n: {"dimensions": n}, TEIError),
    "weaviate": ("/weaviate/{model}/vectors", {"text": "a"}, lambda n: {"config": {"dimensions": n}}, WeaviateError),
    "cohere": ("/v2/embed", {"model": MINILM, "texts": ["a"]}, lambda n: {"output_dimension": n}, CohereError),
    "jina": ("/v1/multi-vector", {"model": "colbert", "input": ["a"]}, lambda n: {"dimensions": n}, JinaError),
    "ollama": ("/api/embed", {"model": MINILM, "input": ["a"]}, lambda n: {"dimensions": n}, OllamaError),
}
MSGPACK = {"content-type": "application/msgpack"}
JSON = {"content-type": "application/json"}

# bytes no decoder accepts: 400 on every route
UNDECODABLE = {
    "deep json": (b"[" * 5000, JSON),
    "deep json in a field": (b'{"model": "x", "inputs": ' + b"[" * 5000 + b"]" * 5000 + b"}", JSON),
    "deep msgpack": (b"\x91" * 5000 + b"\xc0", MSGPACK),
    "invalid utf-8 in a json string": (b'{"model": "all-MiniLM-L6-v2", "inputs": ["\xff\xfe"]}', JSON),
    "invalid utf-8 msgpack string": (b"\x81\xa5model\xa2\xff\xfe", MSGPACK),
    "float beyond double": (b'{"model": "all-MiniLM-L6-v2", "dimensions": 1e400}', JSON),
    "truncated msgpack": (b"\x82\xa5model", MSGPACK),
    "reserved msgpack byte": (b"\xc1", MSGPACK),
}


def _served(http: httpx.Client, route: str, body: dict) -> None:
    response = http.post(route, json=body)
    assert response.status_code == 200, response.text[:300]


def _refused(response: httpx.Response, status: tuple[int, ...], shape: type[msgspec.Struct]) -> None:
    assert response.status_code in status, response.text[:300]
    assert response.headers["content-type"].startswith("application/json")
    msgspec.json.decode(response.content, type=shape)  # the protocol's own error body


@pytest.fixture(scope="module")
def http(fuzz_server):
    with httpx.Client(base_url=fuzz_server.url, timeout=CALL_TIMEOUT) as client:
        yield client


def _url(route: str) -> str:
    return route.format(model=MINILM)


def _body_fields(http: httpx.Client, route: str) -> list[str]:
    """Every property of the route's documented request body."""
    openapi = http.get("/schema/openapi.json").json()
    ref = openapi["paths"][route]["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    return list(openapi["components"]["schemas"][ref.rsplit("/", 1)[1]]["properties"])


@pytest.mark.parametrize("protocol", ROUTES)
@pytest.mark.parametrize("case", UNDECODABLE)
def test_undecodable_bodies_are_400_in_the_protocols_shape(http, protocol, case):
    route, valid, _, shape = ROUTES[protocol]
    content, headers = UNDECODABLE[case]
    _refused(http.post(_url(route), content=content, headers=headers), (400,), shape)
    _served(http, _url(route), valid)


@pytest.mark.parametrize("protocol", ROUTES)
@pytest.mark.parametrize("number", [10**400, -(10**400), 2**64, -1, 1.5, True])
def test_out_of_range_and_mistyped_numbers_are_4xx(http, protocol, number):
    route, valid, numeric, shape = ROUTES[protocol]
    _refused(http.post(_url(route), json={**valid, **numeric(number)}), (400, 422), shape)
    _served(http, _url(route), valid)


WRONG_VALUES = [None, 7, -(10**30), 1.5, True, "", "x" * 3, [], [1], [[]], {}, {"text": 1}]


@pytest.mark.parametrize("protocol", ROUTES)
def test_wrong_types_in_every_field_are_4xx(http, protocol):
    route, valid, _, shape = ROUTES[protocol]
    for field in _body_fields(http, route):
        for value in WRONG_VALUES:
            response = http.post(_url(route), json={**valid, field: value})
            assert response.status_code < 500, (field, value, response.text[:300])
            if response.status_code != 200:  # some values are valid (None for an optional field, a string input)
                _refused(response, (400, 404, 422), shape)
    _served(http, _url(route), valid)


SHAPES = [(native_shape, NativeError), (openai_shape, OpenAIError), (tei_shape, TEIError),
          (weaviate_shape, WeaviateError), (cohere_shape, CohereError), (jina_shape, JinaError),
          (ollama_shape, OllamaError)]
GATEWAY_KINDS = ["malformed_request", "empty", "not_found", "unauthorized", "request_too_large", "http_error"]


@pytest.mark.parametrize("shape,body", SHAPES, ids=[body.__name__ for _, body in SHAPES])
def test_each_error_struct_describes_what_its_shape_writes(shape, body):
    # the fuzzing rarely meets 413, 429, 503 or 504: every engine error and gateway kind, rendered, must decode
    errors = [as_api_error(kind("reason")) for kind in _subclasses(EngineError)]
    errors += [ApiError(status, kind, "reason") for status in DESCRIPTIONS for kind in GATEWAY_KINDS]
    for error in errors:
        msgspec.convert(shape(error), body)


def _subclasses(kind: type) -> list[type]:
    return [kind] + [sub for child in kind.__subclasses__() for sub in _subclasses(child)]


def test_key_refusals_answer_as_documented(api_schema, minilm_spec):
    """401 and 403 come from the bearer-key guard after routing, so each is in its route's own protocol shape;
    the schema documents that body on every route that checks keys."""
    keys = GatewaySettings(api_keys=("inference-key",), admin_keys=("operator-key",))
    engine = Engine([minilm_spec], EngineConfig(device="cpu", dtype="float32"))
    with LiveServer(engine, keys) as keyed:
        for operation in (result.ok() for result in api_schema.get_all_operations()):
            statuses = operation.definition.raw["responses"]
            if "401" not in statuses:
                continue  # health and metrics are open
            case = operation.Case(**_any_request(operation))
            refusals = [(401, {})]
            if "403" in statuses:  # an operator route: an inference key is not enough
                refusals.append((403, {"authorization": "Bearer inference-key"}))
            for status, headers in refusals:
                response = case.call(base_url=keyed.url, headers=headers, timeout=CALL_TIMEOUT)
                assert response.status_code == status, (operation.label, response.text[:300])
                case.validate_response(response, checks=CHECKS)


def _any_request(operation) -> dict:
    """The operation's first valid request, or, for one that takes no body, its path filled in."""
    if operation.label in VALID:
        return VALID[operation.label][0]
    return {"path_parameters": {"model": MINILM}} if "{model}" in operation.path else {}
