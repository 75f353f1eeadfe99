"""The dependency rules of the layout (shared/design.md), checked on the real imports: the
gateway and the engine's API seam never import torch; the engine never imports the gateway
or an HTTP library; the worker, pool and scheduler never reach back into the facade."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _imported_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print(' '.join(sorted(m.split('.')[0] for m in sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return set(out.split())


@pytest.mark.parametrize("statement", ["import gateway.app", "import gateway.cli", "import engine.api",
                                       "from engine import EngineAPI, ModelSpec, default_model_spec"])
def test_the_gateway_and_the_engine_api_never_import_torch(statement):
    assert "torch" not in _imported_after(statement)


def test_the_engine_imports_no_gateway_and_no_http():
    loaded = _imported_after("from engine.engine import Engine")
    assert not loaded & {"gateway", "litestar", "httpx", "uvicorn", "connectors", "prometheus_client"}


def _modules_imported_by(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("module", ["worker", "pool", "scheduler", "served", "tasks", "api"])
def test_the_request_path_points_one_way(module):
    """Only the facade (engine.py) knows the facade; the pieces it drives do not import it."""
    assert "engine" not in _modules_imported_by(ROOT / "engine" / f"{module}.py")


def test_the_gateway_calls_the_engine_api_only():
    """Adapters import `engine` (the torch-free package), never its implementation modules."""
    for path in (ROOT / "gateway").rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("engine."):
                assert node.module in ("engine.api", "engine.errors", "engine.sizes"), (path, node.module)
