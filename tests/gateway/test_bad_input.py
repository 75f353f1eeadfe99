"""Every bad input gets a clear JSON error with the right 4xx, and the server keeps serving."""

from __future__ import annotations

import pytest

MODEL = "all-MiniLM-L6-v2"

NATIVE_CASES = [
    ("malformed json", b'{"model": ', 400, "malformed_request"),
    ("not an object", b'[1, 2]', 422, "invalid_request"),
    ("wrong type", b'{"model": "all-MiniLM-L6-v2", "inputs": "text"}', 422, "invalid_request"),
    ("wrong item type", b'{"model": "all-MiniLM-L6-v2", "inputs": ["a", 3]}', 422, "invalid_request"),
    ("missing field", b'{"model": "all-MiniLM-L6-v2"}', 422, "invalid_request"),
    ("empty list", b'{"model": "all-MiniLM-L6-v2", "inputs": []}', 422, "invalid_request"),
    ("empty string", b'{"model": "all-MiniLM-L6-v2", "inputs": ["ok", ""]}', 422, "invalid_request"),
    ("unknown model", b'{"model": "no-such-model", "inputs": ["a"]}', 404, "model_not_found"),
    ("dimensions zero", b'{"model": "all-MiniLM-L6-v2", "inputs": ["a"], "dimensions": 0}', 422, "invalid_request"),
    ("dimensions too big", b'{"model": "all-MiniLM-L6-v2", "inputs": ["a"], "dimensions": 385}', 422, "invalid_request"),
    ("bad input_type", b'{"model": "all-MiniLM-L6-v2", "inputs": ["a"], "input_type": "image"}', 422, "invalid_request"),
    ("too long, no truncation", b'{"model": "all-MiniLM-L6-v2", "inputs": ["' + b"word " * 400 + b'"], "truncate": false}',
     422, "input_too_long"),
    ("too many inputs", b'{"model": "all-MiniLM-L6-v2", "inputs": [' + b",".join([b'"a"'] * 257) + b"]}", 413,
     "too_many_inputs"),
    ("body too large", b'{"model": "all-MiniLM-L6-v2", "inputs": ["' + b"a" * (2**20 + 10) + b'"]}', 413,
     "request_too_large"),
]


@pytest.mark.parametrize("name,body,status,kind", NATIVE_CASES, ids=[c[0] for c in NATIVE_CASES])
def test_native_bad_input(client, name, body, status, kind):
    response = client.post("/v1/encode", content=body, headers={"content-type": "application/json"})
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert error["type"] == kind and error["message"]
    # and the server still serves
    ok = client.post("/v1/encode", json={"model": MODEL, "inputs": ["still alive"]})
    assert ok.status_code == 200 and len(ok.json()["embeddings"][0]) == 384


OPENAI_CASES = [
    ("malformed json", b"{", 400),
    ("missing input", b'{"model": "all-MiniLM-L6-v2"}', 422),
    ("empty list", b'{"model": "all-MiniLM-L6-v2", "input": []}', 422),
    ("token ids", b'{"model": "all-MiniLM-L6-v2", "input": [101, 102]}', 422),
    ("number", b'{"model": "all-MiniLM-L6-v2", "input": 7}', 422),
    ("bad encoding", b'{"model": "all-MiniLM-L6-v2", "input": "a", "encoding_format": "hex"}', 422),
    ("unknown model", b'{"model": "text-embedding-3-small", "input": "a"}', 404),
    ("bad dimensions", b'{"model": "all-MiniLM-L6-v2", "input": "a", "dimensions": -1}', 422),
]


@pytest.mark.parametrize("name,body,status", OPENAI_CASES, ids=[c[0] for c in OPENAI_CASES])
def test_openai_bad_input_uses_openai_error_shape(client, name, body, status):
    response = client.post("/v1/embeddings", content=body, headers={"content-type": "application/json"})
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]


def test_unknown_route_and_method_are_json(client):
    missing = client.get("/v1/nothing-here")
    assert missing.status_code == 404 and missing.json()["error"]["type"] == "not_found"
    wrong_method = client.get("/v1/encode")
    assert wrong_method.status_code == 405 and wrong_method.json()["error"]["type"] == "method_not_allowed"


def test_bad_deadline_header(client):
    response = client.post("/v1/encode", json={"model": MODEL, "inputs": ["a"]}, headers={"x-shoal-deadline-ms": "soon"})
    assert response.status_code == 400 and response.json()["error"]["type"] == "malformed_request"


def test_unknown_model_load_is_404(client):
    response = client.post("/v1/models/absent/load")
    assert response.status_code == 404 and response.json()["error"]["type"] == "model_not_found"


def test_repeated_slashes_collapse(server, client):
    # Weaviate's Cohere module joins a base URL ending in "/" with "/v2/...": "//v2/..."
    response = client.post(server.url + "//v1//encode", json={"model": MODEL, "inputs": ["double slashes"]})
    assert response.request.url.raw_path == b"//v1//encode"
    assert response.status_code == 200


def test_openai_errors_also_carry_jinas_detail(client):
    # Weaviate's text2vec-jinaai module posts to /v1/embeddings and reads {"detail"} on errors
    body = client.post("/v1/embeddings", json={"model": "no-such-model", "input": "a"}).json()
    assert body["detail"] == body["error"]["message"] and "no-such-model" in body["detail"]


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded"])
def test_a_body_that_is_not_json_or_msgpack_is_a_415(client, content_type):
    response = client.post("/v1/encode", content=b'{"model": "all-MiniLM-L6-v2", "inputs": ["a"]}',
                           headers={"content-type": content_type})
    assert response.status_code == 415
    assert response.json()["error"]["type"] == "unsupported_media_type"
    assert "application/json" in response.json()["error"]["message"]
    assert client.post("/v1/encode", json={"model": MODEL, "inputs": ["a"]}).status_code == 200


# a body each native route takes, and a misspelling of one of its fields
NATIVE_BODIES = [
    ("/v1/encode", {"model": MODEL, "inputs": ["a"]}, "normalise", "normalize"),
    ("/v1/score", {"model": MODEL, "query": "q", "documents": ["a"]}, "topn", "top_n"),
    ("/v1/classify", {"model": MODEL, "inputs": ["a"]}, "lables", "labels"),
    ("/v1/extract", {"model": MODEL, "inputs": ["a"]}, "treshold", "threshold"),
    ("/v1/compress", {"model": MODEL, "context": "a"}, "contxt", "context"),
]


@pytest.mark.parametrize("path,body,typo,meant", NATIVE_BODIES, ids=[b[0] for b in NATIVE_BODIES])
def test_an_unknown_field_on_a_native_route_is_a_422_naming_it(client, path, body, typo, meant):
    response = client.post(path, json={**body, typo: 1})
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request"
    assert error["message"] == f"unknown field `{typo}` (did you mean `{meant}`?)"


def test_an_unknown_field_is_named_in_msgpack_too_and_unlike_names_list_the_fields(client):
    import msgspec

    response = client.post("/v1/encode", content=msgspec.msgpack.encode({"model": MODEL, "inputs": ["a"], "zzz": 1}),
                           headers={"content-type": "application/msgpack"})
    assert response.status_code == 422
    message = response.json()["error"]["message"]
    assert message.startswith("unknown field `zzz` (the fields are ") and "`inputs`" in message and "`model`" in message


@pytest.mark.parametrize("path,missing", [
    ("/v1/encode", "missing required fields `model`, `inputs`"),
    ("/v1/score", "missing required fields `model`, `query`, `documents`"),
    ("/v1/compress", "missing required field `model`"),
])
def test_an_empty_object_names_every_missing_field(client, path, missing):
    response = client.post(path, json={})
    assert response.status_code == 422
    assert response.json()["error"] == {"type": "invalid_request", "message": missing}


@pytest.mark.parametrize("content_type", ["application/json", "application/msgpack"])
def test_a_zero_length_body_is_a_400_saying_so(client, content_type):
    response = client.post("/v1/encode", content=b"", headers={"content-type": content_type})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "malformed_request" and "body is empty" in error["message"]


@pytest.mark.parametrize("body,message", [
    (b"[1, 2]", "the request body must be an object, got `array`"),
    (b'{"model": "all-MiniLM-L6-v2", "inputs": ["a", 3]}', "`inputs[1]`: expected `str`, got `int`"),
])
def test_validation_messages_name_the_body_or_field_not_the_handler_argument(client, body, message):
    response = client.post("/v1/encode", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 422 and response.json()["error"]["message"] == message


# Protocol routes ignore fields they do not define, as their real servers do (see protocols.md): the
# fields here are ones real clients send (Jina's task/embedding_type on /v1/embeddings from Weaviate's
# text2vec-jinaai, text2vec-huggingface's `options` to TEI's /embed, Weaviate's dims/vector/error).
LENIENT = [
    ("/v1/embeddings", {"model": MODEL, "input": ["a"], "user": "u", "task": "retrieval.passage",
                        "embedding_type": "float"}),
    ("/v2/embed", {"model": MODEL, "texts": ["a"], "input_type": "search_document", "embedding_types": ["float"],
                   "truncate": "END"}),
    ("/api/embed", {"model": MODEL, "input": ["a"], "keep_alive": "5m", "options": {"num_thread": 2}}),
    (f"/tei/{MODEL}/embed", {"inputs": ["a"], "options": {}}),
    (f"/weaviate/{MODEL}/vectors", {"text": "a", "dims": 0, "vector": None, "error": "", "extra": 1}),
]


@pytest.mark.parametrize("path,body", LENIENT, ids=[p for p, _ in LENIENT])
def test_protocol_routes_ignore_fields_they_do_not_use(client, path, body):
    response = client.post(path, json=body)
    assert response.status_code == 200, response.text


def test_metrics_content_type_names_its_charset_once(client):
    content_type = client.get("/metrics").headers["content-type"]
    assert content_type == "text/plain; version=0.0.4; charset=utf-8"
