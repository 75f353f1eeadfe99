"""The kustomizations render, validate against Kubernetes and CRD schemas, and
hold the deployment properties the issue asks for."""

from __future__ import annotations

import base64
import copy
import os
import re
import shutil
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
    assert sorted((o["kind"], o["metadata"]["name"]) for o in custom) == [
        ("PrometheusRule", "shoal"), ("ScaledObject", "shoal"), ("ServiceMonitor", "shoal"),
        ("ServiceMonitor", "shoal-router")]
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
    obj = copy.deepcopy(find(rendered["cpu"], kind, "shoal"))
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
    pod = find(rendered["gpu"], "Deployment", "shoal")["spec"]["template"]["spec"]
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
    for sm in (o for o in objects if o["kind"] == "ServiceMonitor"):
        assert sm["spec"]["namespaceSelector"]["matchNames"] == [NAMESPACE]


def test_monitoring_objects_carry_the_kube_prometheus_stack_release_label(overlay):
    _, objects = overlay
    for monitoring in (o for o in objects if o["kind"] in ("ServiceMonitor", "PrometheusRule")):
        assert monitoring["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    dashboards = [o for o in objects if o["kind"] == "ConfigMap" and o["metadata"].get("labels", {}).get("grafana_dashboard") == "1"]
    assert len(dashboards) == 1


@pytest.mark.parametrize("monitor,service,pods", [("shoal", "shoal", "shoal"),
                                                  ("shoal-router", "shoal-router", "shoal-router")])
def test_servicemonitor_selects_the_service_port(overlay, monitor, service, pods):
    """Each ServiceMonitor selects exactly one Service (two would scrape every pod twice),
    a port of it, and that Service's pods are the Deployment's."""
    _, objects = overlay
    sm = find(objects, "ServiceMonitor", monitor)
    selected = [o for o in objects if o["kind"] == "Service" and
                all(o["metadata"]["labels"].get(k) == v for k, v in sm["spec"]["selector"]["matchLabels"].items())]
    assert [o["metadata"]["name"] for o in selected] == [service]
    (svc,) = selected
    assert sm["spec"]["endpoints"][0]["port"] in {p["name"] for p in svc["spec"]["ports"]}
    assert sm["spec"]["endpoints"][0]["path"] == "/metrics"
    template = find(objects, "Deployment", pods)["spec"]["template"]["metadata"]["labels"]
    assert all(template.get(k) == v for k, v in svc["spec"]["selector"].items())


def test_dashboard_covers_the_asked_panels(overlay):
    _, objects = overlay
    queries = " ".join(all_queries(objects).values())
    for metric in ("shoal_requests_total", "shoal_request_duration_seconds_bucket", "shoal_queue_depth",
                   "shoal_models_resident", "shoal_resident_bytes", "shoal_model_loads_total",
                   "shoal_model_evictions_total"):
        assert metric in queries
    assert "sum by (status)" in queries
    assert set(scaler_queries(objects)) - {"router-demand"} == {"queue-depth", "p95-latency"}


# --- bearer keys: a Secret, mounted read-only, named by the CLI's env vars ------

KEYS_SECRET = "shoal-keys"
KEYS_COMPONENT = K8S / "components" / "keys"


class _WatchedEnviron(dict):
    """A stand-in for os.environ that records every name read from it."""

    def __init__(self, values=()):
        super().__init__(values)
        self.read: list[str] = []

    def get(self, key, default=None):
        self.read.append(key)
        return super().get(key, default)

    def __getitem__(self, key):
        self.read.append(key)
        return super().__getitem__(key)

    def __contains__(self, key):
        self.read.append(key)
        return super().__contains__(key)


def _serve_args(environ: dict[str, str]):
    """`shoal serve` parsed by gateway.cli under `environ` (and nothing else)."""
    from gateway import cli

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(os, "environ", _WatchedEnviron(environ))
        return cli.build_parser().parse_args(["serve"])


def _cli_keys(environ: dict[str, str]) -> dict[str, tuple[str, ...]]:
    """The inference and operator keys gateway.cli serves with, under `environ`
    (the same calls `serve` makes to build its GatewaySettings)."""
    from gateway import cli

    args = _serve_args(environ)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(os, "environ", _WatchedEnviron(environ))
        return {"inference": cli.api_keys(args), "operator": cli.api_keys(args, "admin_key")}


@pytest.fixture(scope="module")
def key_env():
    """What gateway.cli reads keys from, found by watching it rather than spelled
    here: `files` maps each environment variable that names a keys file to the
    option it sets; `plain` is the variables that would carry keys themselves."""
    from gateway import cli

    watched = _WatchedEnviron()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(os, "environ", watched)
        cli.build_parser()
    files = {}
    for name in dict.fromkeys(watched.read):
        marker = f"/marker/{name}"
        try:
            args = _serve_args({name: marker})
        except (ValueError, TypeError):  # a numeric option: not a file name
            continue
        files |= {name: dest for dest, value in vars(args).items() if value == marker and dest.endswith("keys_file")}
    plain = _WatchedEnviron()
    args = _serve_args({})
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(os, "environ", plain)
        cli.api_keys(args), cli.api_keys(args, "admin_key")
    assert len(files) == 2, f"expected an inference and an operator keys-file variable, found {files}"
    assert plain.read, "gateway.cli.api_keys reads no environment variable"
    return {"files": files, "plain": set(plain.read)}


def keys_volume(objects):
    deployment, c = container(objects)
    volumes = [v for v in deployment["spec"]["template"]["spec"]["volumes"]
               if v.get("secret", {}).get("secretName", "").startswith(KEYS_SECRET)]
    assert len(volumes) == 1, f"expected one volume from the {KEYS_SECRET} Secret, found {volumes}"
    (mount,) = [m for m in c["volumeMounts"] if m["name"] == volumes[0]["name"]]
    return volumes[0], mount


def test_keys_come_from_a_required_secret_mounted_read_only(overlay):
    _, objects = overlay
    volume, mount = keys_volume(objects)
    secret = volume["secret"]
    assert mount["readOnly"] is True
    assert "subPath" not in mount, "a subPath mount never sees a rotated key"
    # Required: no Secret, no pod (rather than a server open to anyone who can reach it).
    assert secret["optional"] is False
    assert {i["key"] for i in secret["items"]} == {"api-keys", "admin-keys"}
    assert secret.get("defaultMode", 0o644) & 0o007 == 0, "keys must not be world-readable"
    # The overlays ship no Secret: keys are created by the operator, never committed.
    assert not [o for o in objects if o["kind"] == "Secret"]


def test_key_env_vars_are_the_ones_the_cli_reads(overlay, key_env, tmp_path):
    """Each keys-file variable the CLI reads is set to a file in the Secret volume,
    and the CLI, given those files, serves api-keys as inference keys and
    admin-keys as operator keys."""
    _, objects = overlay
    _, c = container(objects)
    volume, mount = keys_volume(objects)
    e = env(c)
    assert set(key_env["files"]) <= set(e), f"{sorted(key_env['files'])} must all be set"
    by_path = {i["path"]: i["key"] for i in volume["secret"]["items"]}
    environ = {}
    for name in key_env["files"]:
        path = Path(e[name])
        assert path.is_relative_to(mount["mountPath"]), f"{name}={path} is outside the keys volume"
        entry = by_path[str(path.relative_to(mount["mountPath"]))]
        local = tmp_path / entry
        local.write_text(f"# {entry}\nkey-from-{entry}\n")
        environ[name] = str(local)
    assert sorted(by_path.values()) == sorted(p.name for p in tmp_path.iterdir()), "every Secret entry is read"
    assert _cli_keys(environ) == {"inference": ("key-from-api-keys",), "operator": ("key-from-admin-keys",)}


def test_no_key_material_in_env_or_configmaps(overlay, key_env):
    _, objects = overlay
    deployment, c = container(objects)
    pod = deployment["spec"]["template"]["spec"]
    for each in pod["containers"] + pod.get("initContainers", []):
        names = {e["name"] for e in each.get("env", [])}
        assert not names & key_env["plain"], f"keys passed as env values: {names & key_env['plain']}"
        assert not [e for e in each.get("env", []) if "valueFrom" in e and "secretKeyRef" in e["valueFrom"]]
        assert not [s for s in each.get("envFrom", []) if "secretRef" in s]
        for e in each.get("env", []):
            assert "key" not in e["name"].lower() or e["name"] in key_env["files"], e
    for cm in (o for o in objects if o["kind"] == "ConfigMap"):
        for key, text in {**cm.get("data", {}), **cm.get("binaryData", {})}.items():
            assert key not in {"api-keys", "admin-keys"}, f"ConfigMap {cm['metadata']['name']} holds {key}"
            assert not re.search(r"(?i)\b(api|admin)[-_]?keys?\b", text), f"ConfigMap {cm['metadata']['name']}/{key}"


def _with_keys_component(tmp_path: Path, overlay_name: str, keys: dict[str, str]) -> list[dict]:
    """Render `overlay_name` plus k8s/components/keys, from a copy of k8s/ in which
    the component's (git-ignored) key files hold `keys`."""
    copy = tmp_path / "k8s"
    shutil.copytree(K8S, copy, ignore=shutil.ignore_patterns("api-keys", "admin-keys"))
    for entry, text in keys.items():
        (copy / KEYS_COMPONENT.relative_to(K8S) / entry).write_text(text)
    mine = copy / "overlays" / f"{overlay_name}-with-keys"
    mine.mkdir()
    (mine / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "resources": [f"../{overlay_name}"], "components": ["../../components/keys"]}))
    return kustomize(mine)


@pytest.mark.parametrize("overlay_name", OVERLAYS)
def test_keys_component_generates_the_secret_the_deployment_mounts(overlay_name, tmp_path):
    canary = {"api-keys": "# inference\ncanary-inference-3f9c\n", "admin-keys": "canary-operator-8b1e\n"}
    objects = _with_keys_component(tmp_path, overlay_name, canary)
    secret = find(objects, "Secret")
    volume, _ = keys_volume(objects)
    assert secret["metadata"]["name"].startswith(f"{KEYS_SECRET}-"), "the name carries the content hash"
    assert volume["secret"]["secretName"] == secret["metadata"]["name"]
    assert secret["metadata"]["namespace"] == NAMESPACE
    assert {k: base64.b64decode(v).decode() for k, v in secret["data"].items()} == canary
    # The keys are in the Secret and nowhere else, in clear or base64.
    rest = yaml.safe_dump_all([o for o in objects if o is not secret])
    for text in canary.values():
        for line in text.splitlines():
            assert line not in rest and base64.b64encode(line.encode()).decode() not in rest
    path = tmp_path / "rendered.yaml"
    path.write_text(yaml.safe_dump_all([o for o in objects if (o["apiVersion"], o["kind"]) not in CRD_SCHEMAS]))
    result = subprocess.run([tool("kubernetes-validate"), "--strict", "--quiet", "-k", KUBERNETES_VERSION, str(path)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_keys_component_files_are_never_committed():
    git = shutil.which("git")
    if git is None:
        pytest.skip("git is not installed")
    for entry in ("api-keys", "admin-keys"):
        path = KEYS_COMPONENT / entry
        ignored = subprocess.run([git, "check-ignore", "-q", str(path)], cwd=K8S, capture_output=True)
        assert ignored.returncode == 0, f"{path} must be git-ignored"
        tracked = subprocess.run([git, "ls-files", "--error-unmatch", str(path)], cwd=K8S, capture_output=True)
        assert tracked.returncode != 0, f"{path} is committed"


# --- the NetworkPolicy ----------------------------------------------------------

CLIENT_LABEL = {"shoal.ai/client": "true"}


def _selects(selector: dict, labels: dict) -> bool:
    assert not selector.get("matchExpressions"), "keep selectors to matchLabels, so they can be read at a glance"
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


def _prometheus_namespace(objects) -> str:
    """The namespace Prometheus runs in, read from the KEDA triggers' server address."""
    (host,) = {re.match(r"https?://[^./]+\.([^./]+)\.svc", t["metadata"]["serverAddress"])[1]
               for t in find(objects, "ScaledObject")["spec"]["triggers"]}
    return host


def _callers_in_k8s(objects, policy) -> list[dict]:
    """Pod labels of every other workload rendered beside Shoal (the router tier,
    when k8s/ has one): each must be admitted by a rule of its own."""
    pods = []
    for workload in (o for o in objects if o["kind"] in ("Deployment", "StatefulSet", "DaemonSet")):
        labels = workload["spec"]["template"]["metadata"].get("labels", {})
        if not _selects(policy["spec"]["podSelector"], labels):
            pods.append(labels)
    return pods


def test_network_policy_admits_only_client_namespaces_prometheus_and_the_router(overlay):
    _, objects = overlay
    policy = find(objects, "NetworkPolicy", "shoal")
    deployment, c = container(objects)
    spec = policy["spec"]
    assert _selects(spec["podSelector"], deployment["spec"]["template"]["metadata"]["labels"])
    assert "Ingress" in spec["policyTypes"]
    peers = []
    for rule in spec["ingress"]:
        # No `from` (or an empty one) admits every source.
        assert rule.get("from"), f"ingress rule open to every source: {rule}"
        assert rule.get("ports"), f"ingress rule open on every port: {rule}"
        assert {(p["port"], p.get("protocol", "TCP")) for p in rule["ports"]} <= \
            {(port["name"], "TCP") for port in c["ports"]} | {(port["containerPort"], "TCP") for port in c["ports"]}
        for peer in rule["from"]:
            assert "ipBlock" not in peer, f"ipBlock peers admit by address, not by namespace: {peer}"
            assert peer, "an empty peer admits every pod of every namespace"
            for selector in ("namespaceSelector", "podSelector"):
                if selector in peer:
                    assert peer[selector].get("matchLabels"), f"an empty {selector} selects everything: {peer}"
            peers.append(peer)

    client = {"namespaceSelector": {"matchLabels": CLIENT_LABEL}}
    prometheus = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": _prometheus_namespace(objects)}},
                  "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}}}
    routers = _callers_in_k8s(objects, policy)
    router_peers = [p for p in peers if "namespaceSelector" not in p]  # same namespace: the router tier
    for labels in routers:
        assert any(_selects(p["podSelector"], labels) for p in router_peers), f"router pods {labels} are not admitted"
    assert sorted(map(repr, peers)) == sorted(map(repr, [client, prometheus, *router_peers])), peers
    assert all(any(_selects(p["podSelector"], labels) for labels in routers) for p in router_peers), \
        "a same-namespace peer that selects no rendered router"
    # Shoal's own namespace is not a client namespace (that would admit every pod in it).
    namespace = find(objects, "Namespace", NAMESPACE)
    assert not _selects(client["namespaceSelector"], namespace["metadata"].get("labels", {}))


def test_network_policy_egress_is_dns_only(overlay):
    _, objects = overlay
    spec = find(objects, "NetworkPolicy", "shoal")["spec"]
    assert "Egress" in spec["policyTypes"]
    (rule,) = spec["egress"]
    assert {p["port"] for p in rule["ports"]} == {53}
    (peer,) = rule["to"]
    assert peer["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "kube-system"}
