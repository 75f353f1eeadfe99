"""Every README example runs as written. The ```sh and ```python blocks of README.md run, in
order, against a live gateway on loopback serving what the README serves: the default
all-MiniLM-L6-v2 and, under the names the README gives them, tiny random models of each kind
(`rerank`, `colbert`, `splade`, `nli`, `ner`, `gliner`, `compressor`), built here because
this machine cannot download the real ones. The only change made to a block is the server's
address (a free port instead of 8080) and, for curl, `--fail-with-body` so an HTTP error
fails the block. Blocks that need what a test cannot have (a cluster, a cloud account, the
hub, a Weaviate server, a second `make serve`) say so with a `not-run:<reason>` tag and are
listed here, so a new untagged block runs from the day it is written."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from engine import Engine, EngineConfig, spec_from_folder
from tests.conftest import LiveServer

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
BLOCK = re.compile(r"^```(?P<lang>[a-z]*)(?P<tag>[^\n]*)\n(?P<code>.*?)^```$", re.M | re.S)
# Why a block cannot run in a test: the reasons the README may give, nothing else
NOT_RUN = {"quickstart",  # `make serve` / `make test` themselves, and a second server
           "models",  # downloads from the hub
           "image",  # builds and runs the container (tests/deploy/test_image.py does)
           "kubernetes",  # needs a cluster (tests/deploy renders and validates the manifests)
           "terraform",  # needs a cloud account (tests/deploy/test_terraform.py validates)
           "weaviate"}  # needs a Weaviate server (its module requests are replayed from fixtures)
ADDRESS = "http://127.0.0.1:8080"
BLOCK_TIMEOUT = 180  # seconds; a first request to a model loads it


def blocks() -> list[tuple[int, str, str, str]]:
    """(line, language, tag, code) of every fenced block."""
    text = README.read_text()
    return [(text.count("\n", 0, m.start()) + 1, m.group("lang"), m.group("tag").strip(), m.group("code"))
            for m in BLOCK.finditer(text)]


def runnable() -> list[tuple[int, str, str]]:
    return [(line, lang, code) for line, lang, tag, code in blocks() if lang in ("sh", "python") and not tag]


def test_every_block_is_run_or_says_why_not():
    found = blocks()
    assert found, "no code blocks found in README.md"
    for line, lang, tag, _ in found:
        if tag:
            assert lang in ("sh", "python") and tag.startswith("not-run:"), f"README.md:{line}: unknown tag {tag!r}"
            assert tag.removeprefix("not-run:") in NOT_RUN, f"README.md:{line}: {tag} is not a known reason"
    languages = {lang for _, lang, _ in runnable()}
    assert languages == {"sh", "python"}, languages


GLINER_PYTHON = Path(os.environ.get("SHOAL_GLINER_PYTHON", ROOT / ".gliner-venv" / "bin" / "python"))


def gliner_model(folder: Path) -> Path:
    """A tiny random GLiNER model, built and saved by the gliner package itself."""
    from tests.engine.test_gliner_parity import BERT, MODELS, build_with_package, model_request

    build_with_package([model_request(folder, MODELS["first"], [], seed=0, backbone=BERT)])
    return folder


@pytest.fixture(scope="module")
def readme_server(tmp_path_factory, minilm_spec):
    from tests.engine.test_compress import keep_drop_bert
    from tests.engine.test_zero_shot import nli_model

    if not GLINER_PYTHON.exists():
        if os.environ.get("CI"):
            pytest.fail(f"no gliner environment at {GLINER_PYTHON}: make install-dev makes it")
        pytest.skip(f"no gliner environment at {GLINER_PYTHON} (scripts/install-gliner.sh)")
    if shutil.which("curl") is None:
        pytest.fail("the README's shell examples use curl: install it (apt-get install curl)")
    from tests.conftest import zoo_specs

    root = tmp_path_factory.mktemp("readme-models")
    specs = [minilm_spec] + zoo_specs(root / "zoo", ("rerank", "colbert", "splade", "ner"))
    specs += [spec_from_folder("nli", nli_model(root / "nli", "bert", "entailment-last")),
              spec_from_folder("gliner", gliner_model(root / "gliner")),
              spec_from_folder("compressor", keep_drop_bert(root / "compressor"))]
    with LiveServer(Engine(specs, EngineConfig(device="cpu", dtype="float32"))) as live:
        yield live


def test_the_readme_serves_only_models_the_test_serves():
    """Runnable blocks name only models this test serves (a README example naming another
    model would pass here only by accident)."""
    served = {"all-MiniLM-L6-v2", "rerank", "colbert", "splade", "nli", "ner", "gliner", "compressor"}
    for line, _, code in runnable():
        for name in re.findall(r"""model(?:_name)?["']?\s*[:=]\s*["']([^"']+)["']""", code):
            assert name in served, f"README.md:{line}: model {name!r} is not one the README serves"


def run_block(lang: str, code: str, url: str, cwd: Path) -> subprocess.CompletedProcess:
    code = code.replace(ADDRESS, url)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NO_COLOR": "1"}
    if lang == "sh":
        code = "set -euo pipefail\n" + code.replace("curl -s ", "curl -sS --fail-with-body ")
        command = ["bash", "-c", code]
        cwd = ROOT  # paths in shell examples are relative to the clone, as a reader runs them
    else:
        command = [sys.executable, "-c", code]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=BLOCK_TIMEOUT)


@pytest.mark.parametrize("line,lang,code", runnable(), ids=[f"README.md:{line}" for line, _, _ in runnable()])
def test_readme_block_runs_as_written(readme_server, tmp_path_factory, line, lang, code):
    # one working folder for all Python blocks, as a reader's would be (Chroma's chroma-db)
    cwd = tmp_path_factory.getbasetemp() / "readme-cwd"
    cwd.mkdir(exist_ok=True)
    done = run_block(lang, code, readme_server.url, cwd)
    assert done.returncode == 0, f"README.md:{line} failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    if lang == "sh" and "curl" in code:
        assert done.stdout.strip(), f"README.md:{line}: curl printed nothing"
