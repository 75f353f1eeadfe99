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
