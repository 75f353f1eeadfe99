"""The command line as a user meets it: `shoal inspect` says what Shoal makes of a folder
(and why it cannot serve one), `shoal serve` on a busy port fails clearly before claiming to
serve, and the interactive docs at /schema load nothing from the internet."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys

import httpx

from tests import zoo

SHOAL = [sys.executable, "-m", "gateway.cli"]


def run_cli(*arguments: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([*SHOAL, *arguments], capture_output=True, text=True, timeout=timeout)


def test_inspect_reports_what_serving_would_see(minilm_spec):
    result = run_cli("inspect", str(minilm_spec.path), "--name", "minilm")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["implementation"] == "native (Bert)"
    assert (report["task"], report["outputs"], report["dimension"], report["max_length"]) == \
        ("embed", ["dense"], 384, minilm_spec.max_length)
    assert report["parameters"] == minilm_spec.parameter_count and report["can_serve"] is True


def test_inspect_a_classifier_and_a_missing_folder(tmp_path):
    folder, _ = zoo.classifier(tmp_path / "intent")
    report = json.loads(run_cli("inspect", str(folder)).stdout)
    assert report["task"] == "classify" and report["labels"] == list(zoo.INTENTS.values())
    missing = run_cli("inspect", str(tmp_path / "nothing"))
    assert missing.returncode == 1
    assert json.loads(missing.stdout) == {"name": "nothing", "source": str(tmp_path / "nothing"), "can_serve": False,
                                          "problem": json.loads(missing.stdout)["problem"]}
    assert "neither a folder" in json.loads(missing.stdout)["problem"] and missing.stderr == ""


def test_serve_on_a_busy_port_fails_before_serving():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        result = run_cli("serve", "--port", str(port), timeout=120)
    assert result.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert '"serving"' not in result.stderr and "startup complete" not in result.stderr.lower()


def test_the_docs_page_loads_nothing_from_the_internet(client):
    page = client.get("/schema")
    assert page.status_code == 200 and "swagger" in page.text.lower()
    assert re.findall(r"https?://", page.text) == []
    for asset in re.findall(r"""(?:src|href)=["']([^"']+)["']""", page.text):
        assert client.get(asset).status_code == 200, asset
    assert httpx.get(str(client.base_url) + "/schema/openapi.json", timeout=10).json()["info"]["title"] == "Shoal"
