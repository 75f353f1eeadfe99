"""The kustomizations render, validate against Kubernetes and CRD schemas, and
hold the deployment properties the issue asks for."""

from __future__ import annotations

import copy
import re
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

from engine.catalog import load_catalog
from engine.sizes import parse_size
from gateway.metrics import LATENCY_BUCKETS

from .tools import (HERE, K8S, NAMESPACE, OVERLAYS, all_queries, find, kustomize, python_module, scaler_queries,
                    tool)

KUBERNETES_VERSION = "1.32.0"  # the version the Terraform example provisions
CRD_SCHEMAS = {
    ("keda.sh/v1alpha1", "ScaledObject"): "keda.sh_scaledobjects.yaml",
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "monitoring.coreos.com_servicemonitors.yaml",
    ("monitoring.coreos.com/v1", "PrometheusRule"): "monitoring.coreos.com_prometheusrules.yaml",
}


@pytest.fixture(scope="module", params=OVERLAYS)
def overlay(request):
    return request.param, kustomize(K8S / "overlays" / request.param)


@pytest.fixture(scope="module")
def rendered():
    return {name: kustomize(K8S / "overlays" / name) for name in OVERLAYS}


def test_both_overlays_exist():
    assert set(OVERLAYS) >= {"gpu", "cpu"}


# --- schemas -----------------------------------------------------------------

def test_core_objects_pass_kubernetes_validate_strict(overlay, tmp_path):
    name, objects = overlay
    core = [o for o in objects if (o["apiVersion"], o["kind"]) not in CRD_SCHEMAS]
    assert {o["kind"] for o in core} >= {"Namespace", "Deployment", "Service", "PodDisruptionBudget",
                                          "NetworkPolicy", "ConfigMap", "ServiceAccount"}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump_all(core))
    result = subprocess.run([tool("kubernetes-validate"), "--strict", "--quiet", "-k", KUBERNETES_VERSION, str(path)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def closed(schema):
    """A copy of a CRD schema in which every object that lists properties rejects
    unknown ones, with Go-style inline regex flags made Python-compatible."""
    schema = copy.deepcopy(schema)

    def walk(node):
        if isinstance(node, dict):
            if "properties" in node and "additionalProperties" not in node:
                node["additionalProperties"] = False
            if isinstance(node.get("pattern"), str) and node["pattern"].startswith("^(?i)"):
                node["pattern"] = "(?i)^" + node["pattern"][5:]
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    return schema


def crd_validator(api_version: str, kind: str):
    jsonschema = python_module("jsonschema")
    schema = closed(yaml.safe_load((HERE / "crds" / CRD_SCHEMAS[api_version, kind]).read_text()))
    return jsonschema.Draft202012Validator(schema)


def test_custom_resources_match_their_crd_schemas(overlay):
    _, objects = overlay
    custom = [o for o in objects if (o["apiVersion"], o["kind"]) in CRD_SCHEMAS]
    assert sorted(o["kind"] for o in custom) == ["PrometheusRule", "ScaledObject", "ServiceMonitor"]
    for obj in custom:
        errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
                  for e in crd_validator(obj["apiVersion"], obj["kind"]).iter_errors(obj)]
        assert not errors, f"{obj['kind']}/{obj['metadata']['name']}: {errors}"


@pytest.mark.parametrize("kind,path,bad", [
    ("ScaledObject", ("spec",), {"minReplicas": 1}),  # HPA's spelling, not KEDA's
    ("ScaledObject", ("spec", "triggers", 0), {"metric_type": "Value"}),
    ("ServiceMonitor", ("spec", "endpoints", 0), {"scrapeInterval": "15s"}),
    ("PrometheusRule", ("spec", "groups", 0, "rules", 0), {"severity": "warning"}),
])
def test_crd_schemas_reject_unknown_fields(rendered, kind, path, bad):
    obj = copy.deepcopy(find(rendered["cpu"], kind))
    node = obj
    for key in path:
        node = node[key]
    node.update(bad)
    validator = crd_validator(obj["apiVersion"], kind)
    assert any("Additional properties" in e.message for e in validator.iter_errors(obj))


# --- the Deployment ----------------------------------------------------------

def container(objects):
    deployment = find(objects, "Deployment", "shoal")
    (c,) = deployment["spec"]["template"]["spec"]["containers"]
    return deployment, c


def env(c) -> dict[str, str]:
    return {e["name"]: e["value"] for e in c["env"]}


def test_deployment_leaves_replicas_to_keda(overlay):
    _, objects = overlay
    deployment, _ = container(objects)
    assert "replicas" not in deployment["spec"]
    so = find(objects, "ScaledObject", "shoal")
    target = so["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])


def test_probes_hit_health_and_readiness(overlay):
    _, objects = overlay
    _, c = container(objects)
    assert c["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    startup = c["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 300, "model loading needs minutes of startup"


def test_grace_period_outlasts_prestop_and_drain(overlay):
    _, objects = overlay
    deployment, c = container(objects)
    grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    pre_stop = c["lifecycle"]["preStop"]["sleep"]["seconds"]
    drain = float(env(c)["SHOAL_DRAIN_SECONDS"])
    assert grace > pre_stop + drain
    # the longest request the server measures is the top latency bucket
    assert drain >= max(LATENCY_BUCKETS)


def test_pod_is_locked_down(overlay):
    _, objects = overlay
    deployment, c = container(objects)
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    assert pod["automountServiceAccountToken"] is False
    sc = c["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]


def test_shm_and_model_cache_volumes(overlay):
    _, objects = overlay
    deployment, c = container(objects)
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert volumes[mounts["/dev/shm"]]["emptyDir"]["medium"] == "Memory"
    assert "/models" in mounts and env(c)["HF_HOME"].startswith("/models/")
    # the read-only root needs a writable /tmp
    assert "/tmp" in mounts


def test_catalog_configmap_is_a_catalog_the_engine_loads(overlay, tmp_path):
    _, objects = overlay
    deployment, c = container(objects)
    catalog_path = Path(env(c)["SHOAL_CATALOG"])
    mount = next(m for m in c["volumeMounts"] if catalog_path.is_relative_to(m["mountPath"]))
    volume = next(v for v in deployment["spec"]["template"]["spec"]["volumes"] if v["name"] == mount["name"])
    cm = find(objects, "ConfigMap", volume["configMap"]["name"])
    text = cm["data"][catalog_path.name]
    assert tomllib.loads(text)["models"]
    (tmp_path / "catalog.toml").write_text(text)
    specs = load_catalog(tmp_path / "catalog.toml")
    assert "all-MiniLM-L6-v2" in [s.name for s in specs]


def test_gpu_overlay_asks_for_a_gpu_node(rendered):
    _, c = container(rendered["gpu"])
    pod = find(rendered["gpu"], "Deployment")["spec"]["template"]["spec"]
    assert c["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert pod["nodeSelector"] == {"shoal.ai/pool": "gpu"}
    assert {"key": "nvidia.com/gpu", "operator": "Equal", "value": "present", "effect": "NoSchedule"} in pod["tolerations"]
    e = env(c)
    assert (e["SHOAL_DEVICE"], e["SHOAL_DTYPE"]) == ("cuda", "bfloat16")
    assert 8 * 2**30 <= parse_size(e["SHOAL_MEMORY_BUDGET"]) < 24 * 10**9, "budget must fit a 24 GB card"


def test_cpu_overlay_has_no_gpu_and_keeps_a_replica(rendered):
    _, c = container(rendered["cpu"])
    assert "nvidia.com/gpu" not in c["resources"].get("limits", {})
    assert env(c)["SHOAL_DEVICE"] == "cpu"
    assert find(rendered["cpu"], "ScaledObject")["spec"]["minReplicaCount"] == 1


# --- scaling -------------------------------------------------------------------

def test_scaled_object_triggers(overlay):
    _, objects = overlay
    spec = find(objects, "ScaledObject")["spec"]
    triggers = {t["name"]: t for t in spec["triggers"]}
    assert triggers["queue-depth"]["metricType"] == "AverageValue"
    assert triggers["p95-latency"]["metricType"] == "Value"
    for t in triggers.values():
        assert t["type"] == "prometheus"
        assert float(t["metadata"]["threshold"]) > 0
        assert t["metadata"]["serverAddress"] == "http://kube-prometheus-stack-prometheus.monitoring.svc:9090"
    latency = triggers["p95-latency"]["metadata"]["query"]
    assert "sum by (le)" in latency and ">= 0" in latency and latency.rstrip().endswith("or vector(0)")
    assert triggers["queue-depth"]["metadata"]["query"].rstrip().endswith("or vector(0)")


def test_hpa_scales_up_fast_and_down_slowly(overlay):
    _, objects = overlay
    spec = find(objects, "ScaledObject")["spec"]
    behavior = spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    assert behavior["scaleUp"]["stabilizationWindowSeconds"] == 0
    assert max(p["value"] for p in behavior["scaleUp"]["policies"] if p["type"] == "Percent") >= 100
    assert behavior["scaleDown"]["stabilizationWindowSeconds"] >= 300
    assert all(p["type"] == "Pods" and p["value"] == 1 for p in behavior["scaleDown"]["policies"])
    # cooldown covers a GPU cold start: node provisioning + image pull + model load
    assert spec["cooldownPeriod"] >= 600
    assert spec["minReplicaCount"] <= spec["maxReplicaCount"]


def test_queries_filter_on_the_namespace_they_are_deployed_to(overlay):
    _, objects = overlay
    assert {o["metadata"].get("namespace", NAMESPACE) for o in objects if o["kind"] != "Namespace"} == {NAMESPACE}
    for where, query in all_queries(objects).items():
        for selector in re.findall(r"shoal_\w+\{([^}]*)\}", query):
            assert re.search(r'namespace="(shoal|\$namespace)"', selector), f"{where}: {query}"
    sm = find(objects, "ServiceMonitor")
    assert sm["spec"]["namespaceSelector"]["matchNames"] == [NAMESPACE]


def test_monitoring_objects_carry_the_kube_prometheus_stack_release_label(overlay):
    _, objects = overlay
    for kind in ("ServiceMonitor", "PrometheusRule"):
        assert find(objects, kind)["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    dashboards = [o for o in objects if o["kind"] == "ConfigMap" and o["metadata"].get("labels", {}).get("grafana_dashboard") == "1"]
    assert len(dashboards) == 1


def test_servicemonitor_selects_the_service_port(overlay):
    _, objects = overlay
    sm, svc = find(objects, "ServiceMonitor"), find(objects, "Service")
    labels = svc["metadata"]["labels"]
    assert all(labels.get(k) == v for k, v in sm["spec"]["selector"]["matchLabels"].items())
    assert sm["spec"]["endpoints"][0]["port"] in {p["name"] for p in svc["spec"]["ports"]}
    assert sm["spec"]["endpoints"][0]["path"] == "/metrics"


def test_dashboard_covers_the_asked_panels(overlay):
    _, objects = overlay
    queries = " ".join(all_queries(objects).values())
    for metric in ("shoal_requests_total", "shoal_request_duration_seconds_bucket", "shoal_queue_depth",
                   "shoal_models_resident", "shoal_resident_bytes", "shoal_model_loads_total",
                   "shoal_model_evictions_total"):
        assert metric in queries
    assert "sum by (status)" in queries
    assert set(scaler_queries(objects)) == {"queue-depth", "p95-latency"}
