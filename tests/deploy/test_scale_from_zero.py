"""Scale from zero (k8s/overlays/gpu-scale-from-zero), proven with the real pieces: the
shipped haproxy.cfg run by HAProxy with no replica up answers 503 JSON + Retry-After; a
real Prometheus scraping HAProxy's own exporter evaluates the exact `router-demand` trigger
query, which is 0 while idle and rises past the activation threshold on the first requests
(what makes KEDA go 0 -> 1); and Shoal's client, retrying through the cold start, gets its
answer once a replica comes up behind the router."""

from __future__ import annotations

import subprocess
import threading
import time

import httpx
import numpy as np
import pytest
import yaml

from .conftest import free_port, stop, wait_until_ok
from .test_prometheus_live import query
from .test_router import Router, shipped_config  # noqa: F401 - the fixture is used by name
from .tools import K8S, NAMESPACE, OVERLAYS, find, kustomize, scaler_queries, tool

OVERLAY = "gpu-scale-from-zero"
MODEL = "all-MiniLM-L6-v2"


@pytest.fixture(scope="module")
def scaled_object():
    return find(kustomize(K8S / "overlays" / OVERLAY), "ScaledObject", "shoal")


def test_only_the_opt_in_overlay_goes_to_zero(scaled_object):
    assert scaled_object["spec"]["minReplicaCount"] == 0
    trigger = next(t for t in scaled_object["spec"]["triggers"] if t["name"] == "router-demand")
    assert trigger["metadata"]["activationThreshold"] == "0"
    assert float(trigger["metadata"]["threshold"]) >= 1e5  # wakes the Deployment; never sizes it
    for name in set(OVERLAYS) - {OVERLAY}:
        spec = find(kustomize(K8S / "overlays" / name), "ScaledObject", "shoal")["spec"]
        assert spec["minReplicaCount"] >= 1, name
        assert "router-demand" not in {t["name"] for t in spec["triggers"]}, name


@pytest.fixture(scope="module")
def empty_router(shipped_config, tmp_path_factory):  # noqa: F811
    """The shipped router with one replica slot and nothing behind it (zero replicas)."""
    folder = tmp_path_factory.mktemp("zero")
    replica_port = free_port()
    router = Router(shipped_config, [replica_port], folder)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            httpx.get(router.stats + "/metrics", timeout=2)
            break
        except httpx.TransportError:
            time.sleep(0.1)
    yield router, replica_port
    router.close()


@pytest.fixture(scope="module")
def prometheus(empty_router, tmp_path_factory):
    """Prometheus scraping the router's exporter every second, with the labels the
    ServiceMonitor gives it in the cluster."""
    router, _ = empty_router
    folder = tmp_path_factory.mktemp("prometheus-router")
    config = folder / "prometheus.yml"
    config.write_text(yaml.safe_dump({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [{"job_name": "shoal-router", "scrape_interval": "1s", "scrape_timeout": "1s",
                            "static_configs": [{"targets": [router.stats.removeprefix("http://")],
                                                "labels": {"namespace": NAMESPACE}}]}],
    }))
    port = free_port()
    log = folder / "prometheus.log"
    with open(log, "wb") as out:
        process = subprocess.Popen([tool("prometheus"), f"--config.file={config}",
                                    f"--storage.tsdb.path={folder / 'data'}", f"--web.listen-address=127.0.0.1:{port}",
                                    "--log.level=warn"], stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ok(f"{url}/-/ready", process, 60, log)
        yield url
    finally:
        stop(process)


def _demand(prometheus: str, promql: str) -> float:
    result = query(prometheus, promql)
    assert len(result) == 1, result
    return float(result[0]["value"][1])


def test_router_demand_wakes_the_deployment_from_zero(empty_router, prometheus, scaled_object):
    router, _ = empty_router
    promql = scaler_queries([scaled_object])["router-demand"]
    deadline = time.monotonic() + 30
    while not query(prometheus, 'up{job="shoal-router"} == 1') and time.monotonic() < deadline:
        time.sleep(0.5)
    time.sleep(3)  # a few idle scrapes
    assert _demand(prometheus, promql) == 0  # idle: nothing wakes it

    for _ in range(5):  # callers arrive while no replica is up
        response = httpx.post(router.url + "/v1/encode", json={"model": MODEL, "inputs": ["hello"]}, timeout=30)
        assert response.status_code == 503 and int(response.headers["retry-after"]) > 0
        assert response.json()["error"]["type"] == "no_replica"
    deadline = time.monotonic() + 30
    while (value := _demand(prometheus, promql)) <= 0 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert value > 0, "the router-demand trigger did not rise past its activation threshold"


def test_the_client_waits_through_a_cold_start(empty_router, minilm_reference):
    """A request sent at zero replicas is answered once a replica starts behind the router,
    because the client honours Retry-After for `retry_seconds`."""
    from connectors import ShoalClient
    from tests.deploy.conftest import serve_command

    router, replica_port = empty_router
    outcome: dict = {}

    def call():
        started = time.monotonic()
        with ShoalClient(router.url, model=MODEL, retries=None, retry_seconds=120) as shoal:
            outcome["vectors"] = shoal.embed(["a cold start"])
        outcome["seconds"] = time.monotonic() - started

    caller = threading.Thread(target=call)
    caller.start()
    time.sleep(2)  # the first tries meet 503 + Retry-After
    replica = subprocess.Popen(serve_command(replica_port), stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        caller.join(timeout=150)
        assert not caller.is_alive(), "the client did not get an answer within its retry budget"
    finally:
        stop(replica)
    expected = minilm_reference.encode(["a cold start"], normalize_embeddings=True)
    np.testing.assert_allclose(outcome["vectors"], expected, atol=1e-5)
    assert outcome["seconds"] > 2
