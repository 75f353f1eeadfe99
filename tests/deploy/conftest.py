"""A real Shoal gateway on a free loopback port, shared by the metrics contract
and the live Prometheus tests."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from .tools import VENV_BIN


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_ok(url: str, process: subprocess.Popen, seconds: float, log: Path) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url}: process exited with {process.returncode}:\n{log.read_text()[-4000:]}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.25)
    raise RuntimeError(f"{url} not ready after {seconds}s:\n{log.read_text()[-4000:]}")


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def serve_command(port: int) -> list[str]:
    """`shoal serve` with the default model on CPU, on a loopback port."""
    shoal = VENV_BIN / "shoal"
    command = [str(shoal)] if shoal.exists() else [sys.executable, "-m", "gateway.cli"]
    return [*command, "serve", "--host", "127.0.0.1", "--port", str(port), "--device", "cpu", "--drain-seconds", "5"]


@pytest.fixture(scope="session")
def gateway(tmp_path_factory):
    """`shoal serve` with the default model on CPU; yields its base URL."""
    port = free_port()
    log = tmp_path_factory.mktemp("gateway") / "gateway.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(serve_command(port), stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ok(f"{url}/readyz", process, 120, log)
        yield url
    finally:
        stop(process)
