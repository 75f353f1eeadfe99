"""Every metric name that any PromQL in k8s/ uses (KEDA triggers, alerts,
dashboard panels) is exported by the running gateway's /metrics."""

from __future__ import annotations

import httpx
import pytest

from .tools import K8S, OVERLAYS, all_queries, exported_metric_names, kustomize, metric_names


@pytest.fixture(scope="module")
def queries():
    out = {}
    for name in OVERLAYS:
        out |= {f"{name}: {where}": q for where, q in all_queries(kustomize(K8S / "overlays" / name)).items()}
    return out


def test_metric_name_extraction():
    q = ('histogram_quantile(0.95, sum by (le, model) (rate(shoal_request_duration_seconds_bucket'
         '{namespace="shoal", route!~"/healthz|up"}[1m]))) >= 0 or vector(0)')
    assert metric_names(q) == {"shoal_request_duration_seconds_bucket"}
    assert metric_names('sum(up{job="x"}) / on (pod) group_left kube_pod_info') == {"up", "kube_pod_info"}


def test_every_promql_metric_is_exported(gateway, queries):
    exposition = httpx.get(f"{gateway}/metrics", timeout=10).text
    exported = exported_metric_names(exposition)
    assert "shoal_queue_depth" in exported and "shoal_request_duration_seconds_bucket" in exported
    used = {}
    for where, query in queries.items():
        names = metric_names(query)
        assert names, f"{where}: no metric in {query!r}"
        for name in names:
            used.setdefault(name, []).append(where)
    unknown = {name: places[:3] for name, places in used.items() if name not in exported}
    assert not unknown, f"metrics used in k8s/ but not exported by the gateway: {unknown}"
    assert len(queries) >= 20
