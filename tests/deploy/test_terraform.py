"""The Terraform module and example: every .tf file parses (python-hcl2), the
structure holds what the issue asks, checkov passes with the custom policies,
and (when the providers are at hand) `terraform validate` passes."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from .tools import CHECKOV_VENV, HERE, K8S, TERRAFORM, find, kustomize, missing, python_module

MODULE = TERRAFORM / "modules" / "shoal-eks"
EXAMPLE = TERRAFORM / "examples" / "eks-gpu"
EXACT_VERSION = re.compile(r"^[0-9]+\.[0-9]+\.[0-9]+$")


def unquote(node):
    """python-hcl2 keeps HCL's quotes on keys and strings and marks blocks; strip both."""
    if isinstance(node, dict):
        return {unquote(k): unquote(v) for k, v in node.items() if k != "__is_block__"}
    if isinstance(node, list):
        return [unquote(v) for v in node]
    if isinstance(node, str) and len(node) >= 2 and node[0] == node[-1] == '"':
        return node[1:-1]
    return node


def parse(folder: Path) -> dict[str, list]:
    """All top-level blocks of a folder's .tf files, by block type."""
    hcl2 = python_module("hcl2")
    merged: dict[str, list] = {}
    files = sorted(folder.glob("*.tf"))
    assert files, f"no .tf files in {folder}"
    for path in files:
        with open(path) as f:
            for key, blocks in unquote(hcl2.load(f)).items():
                merged.setdefault(key, []).extend(blocks)
    return merged


def resources(parsed, type_):
    return {name: body for block in parsed.get("resource", []) for t, named in block.items() if t == type_
            for name, body in named.items()}


def variables(parsed):
    return {name: body for block in parsed.get("variable", []) for name, body in block.items()}


@pytest.fixture(scope="module")
def module():
    return parse(MODULE)


@pytest.fixture(scope="module")
def example():
    return parse(EXAMPLE)


def test_every_tf_file_parses():
    hcl2 = python_module("hcl2")
    files = sorted(TERRAFORM.rglob("*.tf"))
    assert len(files) >= 8
    for path in files:
        with open(path) as f:
            assert hcl2.load(f), path


@pytest.mark.parametrize("folder", [MODULE, EXAMPLE], ids=["module", "example"])
def test_variables_are_described_and_validated(folder):
    declared = variables(parse(folder))
    assert declared
    for name, body in declared.items():
        assert body.get("description", "").strip(), f"{folder.name}: variable {name} has no description"
        assert "type" in body, f"{folder.name}: variable {name} has no type"
    unvalidated = {n for n, b in declared.items() if not b.get("validation")}
    # free-form inputs with nothing to check
    assert unvalidated <= {"tags", "manifests_path"}, unvalidated


@pytest.mark.parametrize("folder", [MODULE, EXAMPLE], ids=["module", "example"])
def test_outputs_are_described(folder):
    outputs = {n: b for block in parse(folder).get("output", []) for n, b in block.items()}
    assert outputs and all(b.get("description") for b in outputs.values())


def test_providers_are_pinned_and_module_configures_none(module, example):
    assert (MODULE / "versions.tf").exists() and (EXAMPLE / "versions.tf").exists()
    assert "provider" not in module, "a reusable module must not declare provider blocks"
    for parsed, exact in ((module, False), (example, True)):
        (terraform,) = parsed["terraform"]
        providers = terraform["required_providers"][0]
        assert set(providers) >= {"aws", "helm", "kustomization"}
        for name, spec in providers.items():
            version = spec["version"]
            if exact:
                assert EXACT_VERSION.match(version), f"example pins {name} exactly, got {version}"
            else:
                assert re.match(r"^~> [0-9]+\.[0-9]+\.[0-9]+$", version), f"module pins {name} to a patch series"
    assert {b for block in example["provider"] for b in block} >= {"aws", "helm", "kustomization"}


def resolve(value: str, declared: dict) -> str:
    match = re.fullmatch(r"\$\{var\.(\w+)\}", value)
    return declared[match[1]]["default"] if match else value


def test_helm_charts_are_pinned(module):
    declared = variables(module)
    releases = resources(module, "helm_release")
    charts = {body["chart"]: body for body in releases.values()}
    assert set(charts) >= {"keda", "kube-prometheus-stack", "cluster-autoscaler", "nvidia-device-plugin"}
    for chart, body in charts.items():
        assert EXACT_VERSION.match(resolve(body["version"], declared)), f"{chart} chart is not pinned"
        assert body["repository"].startswith("https://")


def test_prometheus_release_is_the_one_keda_queries(module):
    """The ScaledObject's serverAddress names the kube-prometheus-stack service."""
    chart = next(b for b in resources(module, "helm_release").values() if b["chart"] == "kube-prometheus-stack")
    (local,) = module["locals"]
    name = resolve(chart["name"].replace("local.", "var."), {k: {"default": v} for k, v in local.items()})
    namespace = resolve(chart["namespace"].replace("local.", "var."), {k: {"default": v} for k, v in local.items()})
    so = find(kustomize(K8S / "overlays" / "gpu"), "ScaledObject")
    for trigger in so["spec"]["triggers"]:
        assert trigger["metadata"]["serverAddress"] == f"http://{name}-prometheus.{namespace}.svc:9090"


def test_gpu_node_group_scales_from_zero_with_taint_and_label(module):
    groups = resources(module, "aws_eks_node_group")
    gpu = groups["gpu"]
    assert "NVIDIA" in gpu["ami_type"]
    (scaling,) = gpu["scaling_config"]
    assert scaling["min_size"] == 0 and scaling["desired_size"] == 0
    assert gpu["taint"] == [{"key": "nvidia.com/gpu", "value": "present", "effect": "NO_SCHEDULE"}]
    assert "taint" not in groups["system"]
    (local,) = module["locals"]
    assert "${local.gpu_labels}" == gpu["labels"]
    # the gpu overlay selects that label and tolerates that taint
    pod = find(kustomize(K8S / "overlays" / "gpu"), "Deployment", "shoal")["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == local["gpu_labels"]
    assert {"key": "nvidia.com/gpu", "operator": "Equal", "value": "present", "effect": "NoSchedule"} in pod["tolerations"]
    # the autoscaler's node template for scale-from-zero advertises the same taint
    tags = resources(module, "aws_autoscaling_group_tag")["gpu_node_template"]["for_each"]
    assert "k8s.io/cluster-autoscaler/node-template/taint/nvidia.com/gpu" in tags


def test_shoal_is_deployed_from_the_kustomize_overlays(module, example):
    builds = {n: b for block in module["data"] for t, named in block.items() if t == "kustomization_build"
              for n, b in named.items()}
    assert builds["shoal"]["path"] == "${local.manifests}/overlays/${var.shoal_overlay}"
    overlays = {p.name for p in (K8S / "overlays").iterdir()}
    condition = variables(module)["shoal_overlay"]["validation"][0]["condition"]
    assert set(re.findall(r'"(\w+)"', condition)) <= overlays
    assert (MODULE / "../../../k8s").resolve() == K8S.resolve()
    (call,) = [b for block in example["module"] for b in block.values()]
    assert (EXAMPLE / call["source"]).resolve() == MODULE.resolve()


# --- checkov -------------------------------------------------------------------

def checkov(folder: Path) -> dict:
    binary = CHECKOV_VENV / "bin" / "checkov"
    if not binary.exists():
        missing(f"checkov (in {CHECKOV_VENV})")
    env = dict(os.environ, BC_SKIP_MAPPING="TRUE", LOG_LEVEL="ERROR")
    result = subprocess.run([str(binary), "-d", str(folder), "--framework", "terraform", "--skip-download",
                             "--external-checks-dir", str(HERE / "checkov"), "-o", "json"],
                            capture_output=True, text=True, timeout=300, env=env)
    assert result.stdout.strip(), result.stderr[-3000:]
    report = json.loads(result.stdout)
    report = report[0] if isinstance(report, list) else report
    report["returncode"] = result.returncode
    return report


def test_checkov_passes_with_custom_policies():
    report = checkov(TERRAFORM)
    failed = [(c["check_id"], c["resource"], c["check_name"]) for c in report["results"]["failed_checks"]]
    assert not failed and report["returncode"] == 0, failed
    assert report["summary"]["parsing_errors"] == 0
    passed = {(c["check_id"], c["resource"]) for c in report["results"]["passed_checks"]}
    assert ("CKV2_SHOAL_2", "module.shoal.aws_eks_node_group.gpu") in passed
    assert sum(1 for check, _ in passed if check == "CKV2_SHOAL_1") >= 4


def test_checkov_custom_policies_catch_violations(tmp_path):
    """Remove the GPU taint and a chart pin: the custom policies must fail."""
    copy = tmp_path / "terraform"
    shutil.copytree(TERRAFORM, copy)
    main = copy / "modules" / "shoal-eks" / "main.tf"
    text = main.read_text()
    text, n_taint = re.subn(r"\n  taint \{.*?\n  \}\n", "\n", text, flags=re.S)
    text, n_pin = re.subn(r'\n  version\s*=\s*var\.keda_chart_version\n', "\n", text)
    assert n_taint == 1 and n_pin == 1
    main.write_text(text)
    report = checkov(copy)
    failed = {(c["check_id"], c["resource"]) for c in report["results"]["failed_checks"]}
    assert ("CKV2_SHOAL_2", "module.shoal.aws_eks_node_group.gpu") in failed
    assert ("CKV2_SHOAL_1", "module.shoal.helm_release.keda") in failed
    assert report["returncode"] != 0


# --- optional: terraform validate ---------------------------------------------

def test_terraform_validate_when_providers_are_available(tmp_path):
    """Needs the providers (registry or a local mirror); skips cleanly without them."""
    terraform = shutil.which("terraform")
    if terraform is None:
        pytest.skip("terraform is not installed (optional check)")
    copy = tmp_path / "terraform"
    shutil.copytree(TERRAFORM, copy, ignore=shutil.ignore_patterns(".terraform*"))
    shutil.copytree(K8S, tmp_path / "k8s")
    workdir = copy / "examples" / "eks-gpu"
    env = dict(os.environ, TF_IN_AUTOMATION="1", CHECKPOINT_DISABLE="1")
    init = subprocess.run([terraform, "init", "-backend=false", "-input=false", "-no-color"], cwd=workdir,
                          capture_output=True, text=True, timeout=120, env=env)
    if init.returncode != 0:
        pytest.skip(f"terraform providers unavailable (optional check): {init.stderr.strip()[-300:]}")
    result = subprocess.run([terraform, "validate", "-no-color"], cwd=workdir, capture_output=True, text=True,
                            timeout=120, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
