"""The ScaledObject's queries and the alert expressions, evaluated by a real
Prometheus scraping a real gateway under load: each answers one finite value,
rises under load, and returns to 0 when the gateway is idle."""

from __future__ import annotations

import asyncio
import math
import subprocess
import time

import httpx
import pytest
import yaml

from .conftest import free_port, stop, wait_until_ok
from .tools import K8S, NAMESPACE, OVERLAYS, alert_rules, kustomize, scaler_queries, split_alert, tool

LOAD_MIN_SECONDS = 10
LOAD_MAX_SECONDS = 40
IDLE_MAX_SECONDS = 100  # the 1m rate windows must empty: 60 s + scrape + evaluation
# Signals that load must move. The others (load failures, evictions, 5xx ratio)
# must stay at 0 throughout: load with one pinned model causes none of them.
RISING_ALERTS = {"ShoalHighLatencyP95", "ShoalQueueSustained"}


@pytest.fixture(scope="module")
def objects():
    rendered = [kustomize(K8S / "overlays" / name) for name in OVERLAYS]
    # the overlays change thresholds, never the queries (scale-from-zero adds a router trigger,
    # evaluated against HAProxy's exporter in test_scale_from_zero.py)
    shoal_triggers = [{k: q for k, q in scaler_queries(r).items() if k != "router-demand"} for r in rendered]
    assert all(triggers == shoal_triggers[0] for triggers in shoal_triggers)
    assert all({k: v["expr"] for k, v in alert_rules(r).items()}
               == {k: v["expr"] for k, v in alert_rules(rendered[0]).items()} for r in rendered)
    return kustomize(K8S / "overlays" / "cpu")


@pytest.fixture(scope="module")
def prometheus(gateway, objects, tmp_path_factory):
    """Prometheus on loopback scraping the gateway every second, with the target
    labels the ServiceMonitor gives it in a cluster, and the alert rules loaded."""
    binary = tool("prometheus")
    folder = tmp_path_factory.mktemp("prometheus")
    rules = folder / "rules.yaml"
    rules.write_text(yaml.safe_dump({"groups": [g for o in objects if o["kind"] == "PrometheusRule"
                                                for g in o["spec"]["groups"]]}))
    config = folder / "prometheus.yml"
    config.write_text(yaml.safe_dump({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(rules)],
        "scrape_configs": [{
            "job_name": "shoal",
            "scrape_interval": "1s",
            "scrape_timeout": "1s",
            "static_configs": [{"targets": [gateway.removeprefix("http://")],
                                "labels": {"namespace": NAMESPACE, "service": "shoal"}}],
        }],
    }))
    port = free_port()
    log = folder / "prometheus.log"
    with open(log, "wb") as out:
        process = subprocess.Popen([binary, f"--config.file={config}", f"--storage.tsdb.path={folder / 'data'}",
                                    f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
                                   stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ok(f"{url}/-/ready", process, 60, log)
        yield url
    finally:
        stop(process)


def query(prometheus: str, promql: str) -> list[dict]:
    response = httpx.get(f"{prometheus}/api/v1/query", params={"query": promql}, timeout=10)
    body = response.json()
    assert response.status_code == 200 and body["status"] == "success", f"{promql}: {body}"
    assert body["data"]["resultType"] == "vector"
    return body["data"]["result"]


def single_finite(prometheus: str, promql: str) -> float:
    result = query(prometheus, promql)
    assert len(result) == 1, f"expected one series from {promql}, got {result}"
    value = float(result[0]["value"][1])
    assert math.isfinite(value), f"{promql} -> {value}"
    return value


def wait_for_scrapes(prometheus: str, count: int = 3) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        result = query(prometheus, 'count_over_time(up{job="shoal"}[1m])')
        if result and float(result[0]["value"][1]) >= count:
            assert float(query(prometheus, 'up{job="shoal"}')[0]["value"][1]) == 1
            return
        time.sleep(0.5)
    pytest.fail("prometheus did not scrape the gateway")


async def load(gateway: str, stop_event: asyncio.Event, workers: int = 24) -> int:
    text = "Shoal serves many small models from one process on one GPU, batching by token budget. " * 3
    payload = {"model": "all-MiniLM-L6-v2", "inputs": [f"{i}: {text}" for i in range(16)]}
    done = 0
    async with httpx.AsyncClient(base_url=gateway, timeout=60) as client:
        async def worker():
            nonlocal done
            while not stop_event.is_set():
                response = await client.post("/v1/encode", json=payload)
                assert response.status_code in (200, 429), response.text
                done += 1
        await asyncio.gather(*(worker() for _ in range(workers)))
    return done


def test_queries_under_load_and_idle(gateway, prometheus, objects):
    signals = {f"trigger {k}": q for k, q in scaler_queries(objects).items()}
    alerts = alert_rules(objects)
    signals |= {f"alert {k}": split_alert(r["expr"])[0] for k, r in alerts.items()}
    rising = {k for k in signals if k.startswith("trigger ") or k.removeprefix("alert ") in RISING_ALERTS}
    wait_for_scrapes(prometheus)

    # idle before any inference: every signal is defined and 0, no alert holds
    for where, promql in signals.items():
        assert single_finite(prometheus, promql) == 0, where
    for name, rule in alerts.items():
        assert query(prometheus, rule["expr"]) == [], name

    # under load, sample every signal each second until all rising ones rose
    peaks = {k: 0.0 for k in signals}

    async def run_load():
        stop_event = asyncio.Event()
        task = asyncio.create_task(load(gateway, stop_event))
        started = time.monotonic()
        while time.monotonic() - started < LOAD_MAX_SECONDS:
            await asyncio.sleep(1)
            for where, promql in signals.items():
                value = await asyncio.to_thread(single_finite, prometheus, promql)
                peaks[where] = max(peaks[where], value)
            if time.monotonic() - started >= LOAD_MIN_SECONDS and all(peaks[k] > 0 for k in rising):
                break
        stop_event.set()
        return await task

    requests = asyncio.run(run_load())
    assert requests > 0
    assert {k: peaks[k] for k in rising if peaks[k] <= 0} == {}, f"did not rise under load: {peaks}"
    assert {k: v for k, v in peaks.items() if k not in rising and v != 0} == {}

    # idle again: everything returns to 0 once the rate windows have emptied
    deadline = time.monotonic() + IDLE_MAX_SECONDS
    while True:
        values = {where: single_finite(prometheus, promql) for where, promql in signals.items()}
        if all(v == 0 for v in values.values()):
            break
        assert time.monotonic() < deadline, f"not back to 0 after {IDLE_MAX_SECONDS}s idle: {values}"
        time.sleep(2)
