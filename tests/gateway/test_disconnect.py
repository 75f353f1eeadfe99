"""Clients that hang up cancel their work before it reaches the device, on every protocol.
Real sockets send real requests and close mid-request; the server's own gauges and counters
show the queued tokens released at once and the abandoned work never computed."""

from __future__ import annotations

import json
import socket
import time

import httpx
import numpy as np
import pytest

from engine import Engine, EngineConfig
from gateway.app import GatewaySettings
from tests.conftest import LiveServer

MODEL = "all-MiniLM-L6-v2"
LONG = " ".join(f"word{i}" for i in range(300))  # truncated to the model's 256 tokens


@pytest.fixture(scope="module")
def live(minilm_spec):
    # Small batches: the abandoned work would take many forward passes to compute.
    engine = Engine([minilm_spec], EngineConfig(device="cpu", dtype="float32", max_batch_tokens=512))
    with LiveServer(engine, GatewaySettings(preload=(MODEL,))) as server:
        yield server


def _body(route: str, client: int) -> dict:
    texts = [f"{LONG} {client} {k}" for k in range(16)]
    if route == "/v1/encode":
        return {"model": MODEL, "inputs": texts}
    if route == "/v1/embeddings":
        return {"model": MODEL, "input": texts}
    if route == f"/tei/{MODEL}/embed":
        return {"inputs": texts}
    return {"texts": texts}  # Weaviate's batch vectorizer body


def _metric(url: str, name: str, labels: str = "") -> float:
    """The sum of a metric's samples whose label set contains `labels` (route labels hold braces)."""
    lines = httpx.get(url + "/metrics", timeout=10).text.splitlines()
    return sum(float(line.rsplit(" ", 1)[1]) for line in lines if line.startswith(name + "{") and labels in line)


def _send_and_keep_open(url: str, route: str, body: dict) -> socket.socket:
    port = int(url.rsplit(":", 1)[1])
    payload = json.dumps(body).encode()
    connection = socket.create_connection(("127.0.0.1", port))
    connection.sendall(f"POST {route} HTTP/1.1\r\nHost: shoal\r\nContent-Type: application/json\r\n"
                       f"Content-Length: {len(payload)}\r\n\r\n".encode() + payload)
    return connection


@pytest.mark.parametrize("route", ["/v1/encode", "/v1/embeddings", f"/tei/{MODEL}/embed",
                                   f"/weaviate/{MODEL}/vectors"])
def test_closing_the_socket_cancels_queued_work(live, route, minilm_reference):
    clients = 6
    computed_before = _metric(live.url, "shoal_tokens_total")
    hung_up_before = _metric(live.url, "shoal_requests_total", 'status="499"')
    sockets = [_send_and_keep_open(live.url, route, _body(route, client)) for client in range(clients)]
    submitted = clients * 16 * 256
    deadline = time.monotonic() + 20
    while _metric(live.url, "shoal_queue_tokens") < submitted / 2 and time.monotonic() < deadline:
        time.sleep(0.02)  # the requests are tokenised and queued
    assert _metric(live.url, "shoal_queue_tokens") >= submitted / 2
    for connection in sockets:
        connection.close()
    deadline = time.monotonic() + 2
    while _metric(live.url, "shoal_queue_tokens") > 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert _metric(live.url, "shoal_queue_tokens") == 0  # released within two seconds of the hang-up
    time.sleep(0.5)  # anything still on the device finishes
    computed = _metric(live.url, "shoal_tokens_total") - computed_before
    assert computed <= submitted / 4, f"{computed} of {submitted} abandoned tokens were computed"
    assert _metric(live.url, "shoal_requests_total", 'status="499"') - hung_up_before == clients
    # and the server keeps serving, correctly
    response = httpx.post(live.url + "/v1/encode", json={"model": MODEL, "inputs": ["still here"]}, timeout=30)
    assert response.status_code == 200
    expected = minilm_reference.encode(["still here"], normalize_embeddings=True)
    np.testing.assert_allclose(response.json()["embeddings"], expected, atol=1e-5)
