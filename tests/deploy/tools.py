"""Finding the external tools tests/deploy needs, rendering the kustomizations,
and pulling PromQL out of the rendered objects."""

from __future__ import annotations

import importlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "k8s"
TERRAFORM = ROOT / "terraform"
HERE = Path(__file__).resolve().parent
OVERLAYS = sorted(p.name for p in (K8S / "overlays").iterdir() if (p / "kustomization.yaml").exists())
VENV_BIN = Path(sys.executable).parent
CHECKOV_VENV = Path(os.environ.get("CHECKOV_VENV", ROOT / ".checkov-venv"))
# The namespace every PromQL query in k8s/ filters on; the kustomizations must deploy there.
NAMESPACE = "shoal"


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


def missing(what: str) -> None:
    """A tool is absent: skip on a developer machine, fail under CI (where
    scripts/install-deploy-tools.sh must have installed it)."""
    message = f"{what} is not installed (run scripts/install-deploy-tools.sh)"
    if in_ci():
        pytest.fail(message)
    pytest.skip(message)


def tool(name: str, *extra_dirs: Path) -> str:
    """Path to an executable: the main venv's bin/, any extra dirs, then PATH."""
    for folder in (VENV_BIN, *extra_dirs):
        candidate = folder / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which(name)
    if found is None:
        missing(name)
    return found


def python_module(name: str):
    try:
        return importlib.import_module(name)
    except ImportError:
        missing(f"python module {name}")


def kustomize(path: Path) -> list[dict]:
    """`kubectl kustomize PATH` as a list of objects."""
    result = subprocess.run([tool("kubectl"), "kustomize", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"kubectl kustomize {path} failed:\n{result.stderr}"
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def find(objects: list[dict], kind: str, name: str | None = None) -> dict:
    matches = [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    assert len(matches) == 1, f"expected one {kind} {name or ''}, found {len(matches)}"
    return matches[0]


# --- PromQL ------------------------------------------------------------------

def scaler_queries(objects: list[dict]) -> dict[str, str]:
    """trigger name -> query of every prometheus trigger of every ScaledObject."""
    out = {}
    for so in (o for o in objects if o["kind"] == "ScaledObject"):
        for trigger in so["spec"]["triggers"]:
            if trigger["type"] == "prometheus":
                out[trigger["name"]] = trigger["metadata"]["query"]
    return out


def alert_rules(objects: list[dict]) -> dict[str, dict]:
    out = {}
    for rule_object in (o for o in objects if o["kind"] == "PrometheusRule"):
        for group in rule_object["spec"]["groups"]:
            for rule in group["rules"]:
                out[rule.get("alert") or rule["record"]] = rule
    return out


# Alerts are written `(<signal>) > <threshold>`: the signal is evaluated on its own.
_ALERT_SHAPE = re.compile(r"^\((?P<signal>.+)\)\s*>\s*(?P<threshold>[0-9.]+)$", re.S)


def split_alert(expr: str) -> tuple[str, float]:
    match = _ALERT_SHAPE.match(expr.strip())
    assert match, f"alert expression is not `(<signal>) > <threshold>`: {expr}"
    signal = match["signal"]
    depth = 0
    for char in signal:  # the outer parentheses must wrap the whole signal
        depth += {"(": 1, ")": -1}.get(char, 0)
        assert depth >= 0, f"unbalanced signal in {expr}"
    assert depth == 0, f"unbalanced signal in {expr}"
    return signal, float(match["threshold"])


def dashboard_queries(objects: list[dict]) -> dict[str, str]:
    out = {}
    for cm in (o for o in objects if o["kind"] == "ConfigMap" and o["metadata"].get("labels", {}).get("grafana_dashboard")):
        for key, text in cm["data"].items():
            for panel in json.loads(text)["panels"]:
                for target in panel.get("targets", []):
                    out[f"{key}: {panel['title']} [{target['refId']}]"] = target["expr"]
    return out


def all_queries(objects: list[dict]) -> dict[str, str]:
    queries = {f"trigger {k}": v for k, v in scaler_queries(objects).items()}
    queries |= {f"alert {k}": r["expr"] for k, r in alert_rules(objects).items()}
    queries |= {f"dashboard {k}": v for k, v in dashboard_queries(objects).items()}
    return queries


PROMQL_WORDS = {
    # aggregations and their modifiers
    "sum", "min", "max", "avg", "count", "stddev", "stdvar", "topk", "bottomk", "quantile", "count_values", "group",
    "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset", "and", "or", "unless",
    # functions this project may use
    "rate", "irate", "increase", "delta", "idelta", "deriv", "histogram_quantile", "vector", "scalar", "abs",
    "clamp_min", "clamp_max", "ceil", "floor", "round", "time", "timestamp", "absent", "absent_over_time",
    "avg_over_time", "max_over_time", "min_over_time", "sum_over_time", "count_over_time", "quantile_over_time",
    "last_over_time", "changes", "resets", "label_replace", "label_join", "sort", "sort_desc",
    "e", "inf", "nan", "Inf", "NaN",
}
_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_MATCHERS = re.compile(r"\{[^}]*\}")
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
_DURATIONS = re.compile(r"\[[^\]]*\]")
_IDENT = re.compile(r"(?<![\w.])[A-Za-z_:][A-Za-z0-9_:]*")


def metric_names(query: str) -> set[str]:
    """Metric names a PromQL query selects. Anything that is neither a PromQL
    keyword/function nor a label list is taken as a metric name, so a non-Shoal
    metric slipping into a query is caught too."""
    text = _STRINGS.sub('""', query)
    text = _MATCHERS.sub("{}", text)
    text = _DURATIONS.sub("[]", text)
    text = _GROUPING.sub(lambda m: m[1] + "()", text)
    return {name for name in _IDENT.findall(text) if name not in PROMQL_WORDS}


def exported_metric_names(exposition: str) -> set[str]:
    """Sample names a Prometheus text exposition can carry, from its # TYPE lines
    (so labelled families that have no samples yet still count)."""
    names = set()
    for line in exposition.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[:2] == ["#", "TYPE"]:
            name, kind = parts[2], parts[3]
            if name.endswith("_created"):
                continue
            if kind == "histogram":
                names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
            elif kind == "counter":
                names.add(name if name.endswith("_total") else f"{name}_total")
            else:
                names.add(name)
    return names
