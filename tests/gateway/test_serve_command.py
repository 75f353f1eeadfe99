"""`shoal serve` as a subprocess, the way the README starts it: serves the embedded
default model with no arguments but a port, and drains in-flight requests on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import httpx
import numpy as np
import pytest

from tests.conftest import free_port

MODEL = "all-MiniLM-L6-v2"


@pytest.fixture
def serve_process():
    process, url = start_serve()
    yield process, url
    if process.poll() is None:
        process.kill()
        process.wait()


def start_serve(*arguments: str) -> tuple[subprocess.Popen, str]:
    """`shoal serve ARGUMENTS` on a free port, once /readyz answers 200."""
    port = free_port()
    env = dict(os.environ, SHOAL_PORT=str(port), HF_HUB_OFFLINE="1")
    process = subprocess.Popen([sys.executable, "-m", "gateway.cli", "serve", *arguments], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"shoal serve exited early:\n{process.stdout.read()}")
        try:
            if httpx.get(url + "/readyz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.2)
    else:
        process.kill()
        pytest.fail("shoal serve did not become ready")
    return process, url


def test_serve_answers_with_the_default_model(serve_process, minilm_reference):
    _, url = serve_process
    texts = ["Shoal serves many small models", "from one process"]
    response = httpx.post(url + "/v1/embeddings", json={"model": MODEL, "input": texts}, timeout=30)
    assert response.status_code == 200
    vectors = np.array([d["embedding"] for d in response.json()["data"]])
    reference = minilm_reference.encode(texts, normalize_embeddings=True)
    assert (vectors * reference).sum(1).min() >= 0.9999
    models = httpx.get(url + "/v1/models", timeout=5).json()["data"]
    assert [m["id"] for m in models] == [MODEL]


def test_sigterm_drains_in_flight_requests(serve_process):
    process, url = serve_process
    results = {}

    def slow_request():
        body = {"model": MODEL, "inputs": ["a long passage about draining " * 40] * 96}
        results["response"] = httpx.post(url + "/v1/encode", json=body, timeout=120)

    thread = threading.Thread(target=slow_request)
    thread.start()
    time.sleep(1.0)  # the request is queued or computing
    process.send_signal(signal.SIGTERM)
    thread.join(timeout=120)
    # uvicorn re-raises the captured SIGTERM after its graceful shutdown completes
    assert process.wait(timeout=60) in (0, -signal.SIGTERM)
    response = results["response"]
    assert response.status_code == 200
    assert len(response.json()["embeddings"]) == 96
    logs = process.stdout.read()
    assert "Finished server process" in logs and "Traceback" not in logs


def test_the_issue_9_scenario_answers_fast_and_exits_at_once(tmp_path, minilm_spec):
    """Two MiniLM copies `a` and `b` and a tiny `c`, `--pin a --memory-budget 150MiB`: `b` can
    never fit while `a` is pinned. It used to hang for minutes, block `c`, leave phantom queue
    depth and make SIGTERM wait the whole drain time."""
    from tests.tiny import tiny_bert, write_sentence_transformers_config

    tiny = tiny_bert(tmp_path / "c")
    write_sentence_transformers_config(tiny)
    process, url = start_serve("--model", f"a={minilm_spec.path}", "--model", f"b={minilm_spec.path}",
                               "--model", f"c={tiny}", "--pin", "a", "--memory-budget", "150MiB",
                               "--drain-seconds", "30")
    try:
        started = time.monotonic()
        refused = httpx.post(url + "/v1/encode", json={"model": "b", "inputs": ["hello"]},
                             headers={"X-Shoal-Deadline-Ms": "1500"}, timeout=30)
        assert refused.status_code == 503 and "pinned" in refused.json()["error"]["message"]
        served = httpx.post(url + "/v1/encode", json={"model": "c", "inputs": ["hello"]}, timeout=30)
        assert served.status_code == 200
        assert time.monotonic() - started < 5
        metrics = httpx.get(url + "/metrics", timeout=5).text
        assert 'shoal_queue_tokens{model="b"} 0.0' in metrics
        big = httpx.post(url + "/v1/encode", json={"model": "a", "inputs": ["word " * 300] * 4}, timeout=30)
        assert big.status_code == 200  # no phantom depth to refuse it with 429
        stopping = time.monotonic()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) in (0, -signal.SIGTERM)
        assert time.monotonic() - stopping < 5  # nothing pending: no waiting out the 30 s drain
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
