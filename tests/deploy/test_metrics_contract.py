"""Every metric name that any PromQL in k8s/ uses (KEDA triggers, alerts,
dashboard panels) is exported: `shoal_*` by the running gateway's /metrics, `haproxy_*`
by the router tier's HAProxy (its built-in exporter, on the shipped config)."""

from __future__ import annotations

import time

import httpx
import pytest

from .conftest import free_port
from .test_router import Router, shipped_config  # noqa: F401 - the fixture is used by name
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


@pytest.fixture(scope="module")
def router_exported(shipped_config, tmp_path_factory):  # noqa: F811
    router = Router(shipped_config, [free_port()], tmp_path_factory.mktemp("router-metrics"))
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                return exported_metric_names(router.metrics())
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the router's exporter did not answer"
                time.sleep(0.1)
    finally:
        router.close()


def test_every_promql_metric_is_exported(gateway, router_exported, queries):
    exposition = httpx.get(f"{gateway}/metrics", timeout=10).text
    exported = exported_metric_names(exposition) | router_exported
    assert "shoal_queue_depth" in exported and "shoal_request_duration_seconds_bucket" in exported
    used = {}
    for where, query in queries.items():
        names = metric_names(query)
        assert names, f"{where}: no metric in {query!r}"
        for name in names:
            used.setdefault(name, []).append(where)
    unknown = {name: places[:3] for name, places in used.items() if name not in exported}
    assert not unknown, f"metrics used in k8s/ but exported by neither the gateway nor the router: {unknown}"
    assert len(queries) >= 20
