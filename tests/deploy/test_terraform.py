"""The Terraform modules and examples.

- modules/shoal-eks: AWS only (cluster, node groups, IAM, KMS, autoscaler tags).
- modules/shoal-platform: what runs in any cluster (charts, the keys Secret, Shoal).
- examples/eks-gpu composes both; examples/existing-cluster uses the platform alone.

What runs here: every .tf file parses (python-hcl2) and is `terraform fmt`-clean;
the structure holds what the manifests in k8s/ rely on; checkov passes with the
custom policies in tests/deploy/checkov/; `terraform validate` and `terraform test`
run the EKS module's suites (modules/shoal-eks/tests) against a mocked aws provider
installed from a local provider mirror; the platform module's variable contract and
both modules' validation messages run offline on their variables alone; both
examples plan against the platform module's interface. The one thing left out is
`terraform validate` of the platform module itself (and so of the examples as
written): its helm and kustomization providers cannot be downloaded here."""

from __future__ import annotations

import base64
import json
import os
import platform
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from .tools import (
    CHECKOV_VENV,
    HERE,
    K8S,
    TERRAFORM,
    find,
    kustomize,
    missing,
    python_module,
)

EKS = TERRAFORM / "modules" / "shoal-eks"
PLATFORM = TERRAFORM / "modules" / "shoal-platform"
EKS_EXAMPLE = TERRAFORM / "examples" / "eks-gpu"
EXISTING_EXAMPLE = TERRAFORM / "examples" / "existing-cluster"
FOLDERS = {"eks": EKS, "platform": PLATFORM, "eks-gpu": EKS_EXAMPLE, "existing-cluster": EXISTING_EXAMPLE}
EXACT_VERSION = re.compile(r"^[0-9]+\.[0-9]+\.[0-9]+$")
# Resource types that talk to a Kubernetes API rather than to a cloud.
IN_CLUSTER = ("helm_", "kustomization_", "kubernetes_", "kubectl_")


def unquote(node):
    """python-hcl2 keeps HCL's quotes on keys and strings and marks blocks; strip both."""
    if isinstance(node, dict):
        return {unquote(k): unquote(v) for k, v in node.items() if k != "__is_block__"}
    if isinstance(node, list):
        return [unquote(v) for v in node]
    if isinstance(node, str) and len(node) >= 2 and node[0] == node[-1] == '"':
        return node[1:-1]
    return node


def hcl_string(text: str) -> str:
    """The value of an HCL string literal's body (escapes resolved)."""
    return re.sub(r'\\(["\\n])', lambda m: "\n" if m[1] == "n" else m[1], text)


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


def typed(parsed, kind: str) -> dict[tuple[str, str], dict]:
    """(type, name) -> body of every `resource` or `data` block."""
    return {(t, name): body for block in parsed.get(kind, []) for t, named in block.items()
            for name, body in named.items()}


def resources(parsed, type_):
    return {name: body for (t, name), body in typed(parsed, "resource").items() if t == type_}


def variables(parsed):
    return {name: body for block in parsed.get("variable", []) for name, body in block.items()}


def outputs(parsed):
    return {name: body for block in parsed.get("output", []) for name, body in block.items()}


def local_values(parsed):
    return {k: v for block in parsed.get("locals", []) for k, v in block.items()}


def module_calls(parsed):
    return {name: body for block in parsed.get("module", []) for name, body in block.items()}


@pytest.fixture(scope="module")
def eks():
    return parse(EKS)


@pytest.fixture(scope="module")
def platform_module():
    return parse(PLATFORM)


def test_every_tf_file_parses():
    hcl2 = python_module("hcl2")
    files = sorted(TERRAFORM.rglob("*.tf"))
    assert len(files) >= 16
    for path in files:
        with open(path) as f:
            assert hcl2.load(f), path


def passed_through(folder: Path, name: str) -> bool:
    """An example's variable handed as it is to a module input that validates it."""
    parsed = parse(folder)
    for call in module_calls(parsed).values():
        if call.get(name) == f"${{var.{name}}}":
            declared = variables(parse((folder / call["source"]).resolve()))
            if declared.get(name, {}).get("validation"):
                return True
    return False


@pytest.mark.parametrize("folder", FOLDERS.values(), ids=FOLDERS.keys())
def test_variables_are_described_and_validated(folder):
    declared = variables(parse(folder))
    assert declared
    for name, body in declared.items():
        assert body.get("description", "").strip(), f"{folder.name}: variable {name} has no description"
        assert "type" in body, f"{folder.name}: variable {name} has no type"
    unvalidated = {n for n, b in declared.items() if not b.get("validation") and b["type"] != "bool"
                   and not passed_through(folder, n)}
    # free-form inputs with nothing to check
    assert unvalidated <= {"manifests_path"}, unvalidated


@pytest.mark.parametrize("folder", FOLDERS.values(), ids=FOLDERS.keys())
def test_outputs_are_described(folder):
    declared = outputs(parse(folder))
    assert declared and all(b.get("description") for b in declared.values())


def required_providers(parsed) -> dict[str, dict]:
    (terraform,) = parsed["terraform"]
    return terraform["required_providers"][0]


def test_providers_are_pinned_and_modules_configure_none():
    expected = {EKS: {"aws"}, PLATFORM: {"helm", "kustomization"},
                EKS_EXAMPLE: {"aws", "helm", "kustomization"}, EXISTING_EXAMPLE: {"helm", "kustomization"}}
    for folder, names in expected.items():
        assert (folder / "versions.tf").exists(), folder
        parsed = parse(folder)
        providers = required_providers(parsed)
        assert set(providers) == names, (folder.name, set(providers))
        is_example = folder.parent.name == "examples"
        for name, spec in providers.items():
            version = spec["version"]
            if is_example:
                assert EXACT_VERSION.match(version), f"{folder.name} pins {name} exactly, got {version}"
                assert {b for block in parsed["provider"] for b in block} == names
            else:
                assert re.match(r"^~> [0-9]+\.[0-9]+\.[0-9]+$", version), f"{folder.name} pins {name} to a patch series"
                assert "provider" not in parsed, "a reusable module must not declare provider blocks"


def test_no_module_mixes_cloud_resources_with_in_cluster_ones(eks, platform_module):
    eks_types = {t for kind in ("resource", "data") for t, _ in typed(eks, kind)}
    assert eks_types and all(t.startswith("aws_") for t in eks_types), eks_types
    platform_types = {t for kind in ("resource", "data") for t, _ in typed(platform_module, kind)}
    assert platform_types and all(t.startswith(IN_CLUSTER) for t in platform_types), platform_types
    assert set(required_providers(platform_module)) & {"aws", "google", "azurerm"} == set()


def resolve(value: str, declared: dict) -> str:
    match = re.fullmatch(r"\$\{var\.(\w+)\}", value)
    return declared[match[1]]["default"] if match else value


def test_helm_charts_are_pinned(platform_module):
    declared = variables(platform_module)
    releases = resources(platform_module, "helm_release")
    charts = {body["chart"]: body for body in releases.values()}
    assert set(charts) == {"keda", "kube-prometheus-stack", "cluster-autoscaler", "nvidia-device-plugin"}
    for chart, body in charts.items():
        assert EXACT_VERSION.match(resolve(body["version"], declared)), f"{chart} chart is not pinned"
        assert body["repository"].startswith("https://")


def test_prometheus_release_is_the_one_keda_queries(platform_module):
    """The ScaledObject's serverAddress names the kube-prometheus-stack service."""
    releases = resources(platform_module, "helm_release").values()
    chart = next(b for b in releases if b["chart"] == "kube-prometheus-stack")
    local = {k: {"default": v} for k, v in local_values(platform_module).items()}
    name = resolve(chart["name"].replace("local.", "var."), local)
    namespace = resolve(chart["namespace"].replace("local.", "var."), local)
    so = find(kustomize(K8S / "overlays" / "gpu"), "ScaledObject")
    for trigger in so["spec"]["triggers"]:
        assert trigger["metadata"]["serverAddress"] == f"http://{name}-prometheus.{namespace}.svc:9090"
    assert outputs(platform_module)["prometheus_url"]["value"] == \
        "http://${local.prometheus_release}-prometheus.${local.prometheus_namespace}.svc:9090"


def test_gpu_node_group_scales_from_zero_with_taint_and_label(eks, platform_module):
    groups = resources(eks, "aws_eks_node_group")
    gpu = groups["gpu"]
    assert "NVIDIA" in gpu["ami_type"]
    (scaling,) = gpu["scaling_config"]
    assert scaling["min_size"] == 0 and scaling["desired_size"] == 0
    assert gpu["taint"] == [{"key": "nvidia.com/gpu", "value": "present", "effect": "NO_SCHEDULE"}]
    assert "taint" not in groups["system"]
    local = local_values(eks)
    assert "${local.gpu_labels}" == gpu["labels"]
    # the gpu overlay selects that label and tolerates that taint
    pod = find(kustomize(K8S / "overlays" / "gpu"), "Deployment", "shoal")["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == local["gpu_labels"]
    assert {"key": "nvidia.com/gpu", "operator": "Equal", "value": "present", "effect": "NoSchedule"} in pod["tolerations"]
    # the autoscaler's node template for scale-from-zero advertises the same taint
    tags = resources(eks, "aws_autoscaling_group_tag")["gpu_node_template"]["for_each"]
    assert "k8s.io/cluster-autoscaler/node-template/taint/nvidia.com/gpu" in tags
    # and the platform puts the device plugin on those nodes
    platform_local = local_values(platform_module)
    assert platform_local["gpu_labels"] == local["gpu_labels"]
    assert platform_local["gpu_taint_key"] == gpu["taint"][0]["key"]
    plugin = resources(platform_module, "helm_release")["nvidia_device_plugin"]
    assert "nodeSelector = local.gpu_labels" in plugin["values"][0]
    assert "key = local.gpu_taint_key" in plugin["values"][0]


def test_autoscaler_permissions_are_bound_to_its_service_account(eks):
    """Not on the node role: a pod on a GPU node must not resize node groups."""
    (policy,) = resources(eks, "aws_iam_role_policy").values()
    assert policy["role"] == "${aws_iam_role.cluster_autoscaler.id}"
    association = resources(eks, "aws_eks_pod_identity_association")["cluster_autoscaler"]
    assert association["role_arn"] == "${aws_iam_role.cluster_autoscaler.arn}"
    local = local_values(eks)
    assert (local["autoscaler_namespace"], local["autoscaler_service_account"]) == ("kube-system", "cluster-autoscaler")
    assert "pods.eks.amazonaws.com" in resources(eks, "aws_iam_role")["cluster_autoscaler"]["assume_role_policy"]
    (call,) = [c for c in module_calls(parse(EKS_EXAMPLE)).values() if c["source"].endswith("shoal-platform")]
    assert call["cluster_autoscaler"] == "${module.eks.cluster_autoscaler}"


def test_shoal_is_deployed_from_the_kustomize_overlays(platform_module):
    builds = {n: b for (t, n), b in typed(platform_module, "data").items() if t == "kustomization_overlay"}
    assert builds["shoal"]["resources"] == ["${local.manifests}/overlays/${var.shoal_overlay}"]
    overlays = {p.name for p in (K8S / "overlays").iterdir()}
    condition = variables(platform_module)["shoal_overlay"]["validation"][0]["condition"]
    assert set(re.findall(r'"(\w+)"', condition)) <= overlays
    assert (PLATFORM / "../../../k8s").resolve() == K8S.resolve()
    for priority in range(3):
        body = resources(platform_module, "kustomization_resource")[f"shoal_p{priority}"]
        assert body["for_each"] == f"${{local.overlay.ids_prio[{priority}]}}"
        assert "sensitive(" in body["manifest"], "Secrets must stay out of plan output"

    def called(example):
        return {(example / call["source"]).resolve() for call in module_calls(parse(example)).values()}

    assert called(EKS_EXAMPLE) == {EKS.resolve(), PLATFORM.resolve()}
    assert called(EXISTING_EXAMPLE) == {PLATFORM.resolve()}


@pytest.mark.parametrize("overlay", ["gpu", "cpu"])
def test_keys_secret_is_the_one_the_deployment_mounts(platform_module, overlay, tmp_path):
    """What the platform's kustomization_overlay builds, rebuilt with kubectl kustomize
    (the kustomization provider cannot be installed here): the overlay plus the
    generated shoal-keys, one key per line in each entry. The Deployment mounts that
    Secret under its hashed name, in its namespace; the overlays bring no Secret of
    their own to clash with it."""
    (generator,) = typed(platform_module, "data")[("kustomization_overlay", "shoal")]["secret_generator"]
    local = {k: {"default": v} for k, v in local_values(platform_module).items()}
    name = resolve(generator["name"].replace("local.", "var."), local)
    namespace = resolve(generator["namespace"].replace("local.", "var."), local)
    # Each literal is `<entry>=<the keys, one a line>`: evaluate that template here.
    keys = {"api_keys": ["inference-key-0123456789abcdef", "second-key-0123456789abcdef"],
            "admin_keys": ["operator-key-0123456789abcdef"]}
    literals = {}
    for literal in generator["literals"]:
        match = re.fullmatch(r'([a-z-]+)=\$\{join\("\\n", var\.(\w+)\)\}\\n', literal)
        assert match, f"unexpected literal template {literal!r}"
        literals[match[1]] = "\n".join(keys[match[2]]) + "\n"
    assert set(literals) == {"api-keys", "admin-keys"}
    options = generator["options"][0]
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "resources": [os.path.relpath(K8S / "overlays" / overlay, tmp_path)],
        "secretGenerator": [{"name": name, "namespace": namespace, "type": generator["type"],
                             "literals": [f"{k}={v}" for k, v in literals.items()],
                             "options": {"labels": options["labels"]}}],
    }
    (tmp_path / "kustomization.yaml").write_text(json.dumps(kustomization))

    assert not [o for o in kustomize(K8S / "overlays" / overlay) if o["kind"] == "Secret"]
    objects = kustomize(tmp_path)
    secret = find(objects, "Secret")
    assert secret["metadata"]["namespace"] == namespace and secret["metadata"]["name"].startswith(f"{name}-")
    assert {k: base64.b64decode(v).decode() for k, v in secret["data"].items()} == literals
    deployment = find(objects, "Deployment", "shoal")
    assert deployment["metadata"]["namespace"] == namespace
    (volume,) = [v for v in deployment["spec"]["template"]["spec"]["volumes"] if "secret" in v]
    assert volume["secret"]["secretName"] == secret["metadata"]["name"]
    assert volume["secret"].get("optional") is False
    assert {item["key"] for item in volume["secret"]["items"]} == set(literals)
    # the keys_secret_name output picks that name out of the overlay's IDs
    pattern = outputs(platform_module)["keys_secret_name"]["value"]
    assert "^_/Secret/${local.namespace}/${local.keys_secret}(-[a-z0-9]+)?$" in pattern
    generated_id = f"_/Secret/{namespace}/{secret['metadata']['name']}"
    assert re.fullmatch(f"_/Secret/{namespace}/{name}(-[a-z0-9]+)?", generated_id)
    for folder in (PLATFORM, EKS_EXAMPLE, EXISTING_EXAMPLE):
        declared = variables(parse(folder))
        for key in ("api_keys", "admin_keys"):
            assert declared[key].get("sensitive") is True and "default" not in declared[key], (folder.name, key)


# --- checkov -------------------------------------------------------------------

def checkov(folder: Path) -> dict:
    binary = CHECKOV_VENV / "bin" / "checkov"
    if not binary.exists():
        missing(f"checkov (in {CHECKOV_VENV})")
    env = dict(os.environ, BC_SKIP_MAPPING="TRUE", LOG_LEVEL="ERROR")
    result = subprocess.run([str(binary), "-d", str(folder), "--framework", "terraform", "--skip-download",
                             "--external-checks-dir", str(HERE / "checkov"), "-o", "json"],
                            capture_output=True, text=True, timeout=300, env=env, check=False)
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
    assert ("CKV2_SHOAL_2", "module.eks.aws_eks_node_group.gpu") in passed  # tainted
    assert ("CKV2_SHOAL_3", "module.eks.aws_eks_node_group.gpu") in passed  # from zero
    assert ("CKV2_SHOAL_5", "module.eks.aws_eks_cluster.this") in passed  # private endpoint
    assert ("CKV_AWS_58", "module.eks.aws_eks_cluster.this") in passed  # secrets encryption
    assert ("CKV_AWS_7", "module.eks.aws_kms_key.secrets") in passed  # key rotation
    # the platform module's releases: pinned, from https repositories
    for check in ("CKV2_SHOAL_1", "CKV2_SHOAL_4"):
        releases = {r for c, r in passed if c == check}
        assert len(releases) >= 4 and all(r.startswith("module.platform.helm_release.") for r in releases), releases


def test_checkov_custom_policies_catch_violations(tmp_path):
    """Break each rule the custom policies state: they must fail."""
    copy = tmp_path / "terraform"
    shutil.copytree(TERRAFORM, copy, ignore=shutil.ignore_patterns(".terraform*"))
    edits = {
        copy / "modules" / "shoal-eks" / "main.tf": [
            (r"\n  taint \{.*?\n  \}\n", "\n"),  # the GPU taint
            (r"(scaling_config \{\n    min_size     = )0", r"\g<1>1"),  # GPU group from zero
            (r"endpoint_private_access = true", "endpoint_private_access = false"),
        ],
        copy / "modules" / "shoal-platform" / "main.tf": [
            (r"\n  version\s*=\s*var\.keda_chart_version\n", "\n"),
            (r'"https://prometheus-community', '"http://prometheus-community'),
        ],
    }
    for path, substitutions in edits.items():
        text = path.read_text()
        for pattern, replacement in substitutions:
            text, n = re.subn(pattern, replacement, text, count=1, flags=re.DOTALL)
            assert n == 1, pattern
        path.write_text(text)
    report = checkov(copy)
    failed = {(c["check_id"], c["resource"]) for c in report["results"]["failed_checks"]}
    assert {
        ("CKV2_SHOAL_2", "module.eks.aws_eks_node_group.gpu"),
        ("CKV2_SHOAL_3", "module.eks.aws_eks_node_group.gpu"),
        ("CKV2_SHOAL_5", "module.eks.aws_eks_cluster.this"),
        ("CKV2_SHOAL_1", "module.platform.helm_release.keda[0]"),
        ("CKV2_SHOAL_4", "module.platform.helm_release.kube_prometheus_stack[0]"),
    } <= failed, failed
    assert report["returncode"] != 0


# --- terraform: fmt, validate, test ----------------------------------------------
#
# The hashicorp/aws provider comes from a local filesystem mirror (found on disk);
# `init -plugin-dir` installs from there alone, so nothing is downloaded. Terraform
# and the mirror are not to be had from the package registries this project's
# machines reach, so where either is absent these tests skip, saying so.

MIRROR_CANDIDATES = [
    os.environ.get("TF_PLUGIN_MIRROR", ""), "/opt/tf-plugins", "/usr/local/share/terraform/plugins",
    "/usr/share/terraform/plugins", "~/.terraform.d/plugins", "~/.local/share/terraform/plugins",
]


def terraform_binary() -> str:
    found = shutil.which("terraform")
    if found is None:
        pytest.skip("terraform is not installed (it comes from no package registry this project reaches)")
    version = json.loads(subprocess.run([found, "version", "-json"], capture_output=True, text=True, timeout=60,
                                        check=True).stdout)["terraform_version"]
    if tuple(int(part) for part in version.split(".")[:2]) < (1, 9):
        pytest.skip(f"terraform {version} is too old: the tests need mock providers (1.7) and "
                    "cross-variable validation (1.9)")
    return found


def provider_mirror() -> Path:
    """The folder holding registry.terraform.io/hashicorp/aws/<5.100.x>/<os_arch>/."""
    os_arch = f"linux_{'arm64' if platform.machine() in ('aarch64', 'arm64') else 'amd64'}"
    for candidate in filter(None, MIRROR_CANDIDATES):
        root = Path(candidate).expanduser()
        if any(root.glob(f"registry.terraform.io/hashicorp/aws/5.100.*/{os_arch}/terraform-provider-aws*")):
            return root
    pytest.skip(f"no local mirror of hashicorp/aws 5.100.x for {os_arch} in {[c for c in MIRROR_CANDIDATES if c]}"
                " (set TF_PLUGIN_MIRROR)")


@pytest.fixture
def tf(tmp_path):
    """Runs terraform with no user CLI config, no prompts, no telemetry."""
    binary = terraform_binary()
    config = tmp_path / "terraformrc"
    config.write_text("")
    env = dict(os.environ, TF_IN_AUTOMATION="1", CHECKPOINT_DISABLE="1", TF_INPUT="0",
               TF_CLI_CONFIG_FILE=str(config))
    env.pop("TF_PLUGIN_CACHE_DIR", None)

    def run(*args, cwd: Path, check: bool = True, timeout: int = 300) -> subprocess.CompletedProcess:
        result = subprocess.run([binary, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env,
                                check=False)
        if check:
            assert result.returncode == 0, f"terraform {' '.join(args)} in {cwd}:\n{result.stdout}\n{result.stderr}"
        return result

    return run


def test_terraform_fmt(tf):
    result = tf("fmt", "-check", "-recursive", "-diff", "-no-color", str(TERRAFORM), cwd=TERRAFORM, check=False)
    assert result.returncode == 0, f"run `terraform fmt -recursive terraform/`:\n{result.stdout}{result.stderr}"


def test_eks_module_validates_and_passes_its_terraform_tests(tf, tmp_path):
    """modules/shoal-eks/tests/*.tftest.hcl against a mocked aws provider: the defaults
    plan, private endpoint and encryption are on, the GPU node group scales from 0 with
    its taint and labels, outputs are wired, bad input is refused."""
    mirror = provider_mirror()
    work = tmp_path / "shoal-eks"
    shutil.copytree(EKS, work, ignore=shutil.ignore_patterns(".terraform*", "terraform.tfstate*"))
    tf("init", "-backend=false", "-no-color", f"-plugin-dir={mirror}", cwd=work)
    tf("validate", "-no-color", cwd=work)
    result = tf("test", "-no-color", cwd=work)
    summary = re.search(r"Success! (\d+) passed, 0 failed", result.stdout)
    assert summary and int(summary[1]) >= 8, result.stdout
    assert "skip" not in result.stdout.replace("tearing down", ""), result.stdout


# Each expect_failures run of a module's variable tests, run again on the module's
# variables alone without its expect_failures: it must fail with exactly the error
# messages of the variables it names. No provider is involved, so this is fast and
# needs no mirror.

RUN_BLOCK = re.compile(r'^run "(?P<name>[^"]+)" \{\n(?P<body>.*?)^\}\n', re.MULTILINE | re.DOTALL)
MOCK_BLOCK = re.compile(r'^mock_provider "[^"]+" \{\n.*?^\}\n', re.MULTILINE | re.DOTALL)
EXPECT = re.compile(r"^\s*expect_failures\s*=\s*\[(?P<vars>.*?)\]\n", re.MULTILINE | re.DOTALL)


def validation_messages(folder: Path) -> dict[str, list[str]]:
    return {name: [hcl_string(rule["error_message"]) for rule in body.get("validation", [])]
            for name, body in variables(parse(folder)).items()}


def variables_alone(folder: Path, work: Path) -> Path:
    work.mkdir()
    shutil.copy(folder / "variables.tf", work / "variables.tf")
    (work / "tests").mkdir()
    return work


def check_messages(tf, folder: Path, suite: Path, work: Path) -> int:
    text = suite.read_text()
    header = MOCK_BLOCK.sub("", text[: RUN_BLOCK.search(text).start()])
    expected: dict[str, set[str]] = {}
    for match in RUN_BLOCK.finditer(text):
        failing = EXPECT.search(match["body"])
        if failing:
            expected[match["name"]] = set(re.findall(r"var\.(\w+)", failing["vars"]))
            body = EXPECT.sub("", match["body"])
            run = f'run "{match["name"]}" {{\n{body}}}\n'
            (work / "tests" / f"{match['name']}.tftest.hcl").write_text(f"{header}\n{run}")
    assert expected, f"no expect_failures runs in {suite}"
    tf("init", "-backend=false", "-no-color", f"-plugin-dir={work / 'no-providers'}", cwd=work)
    result = tf("test", "-json", "-no-color", cwd=work, check=False)
    messages = validation_messages(folder)
    failed: dict[str, list[str]] = {name: [] for name in expected}
    for line in result.stdout.splitlines():
        event = json.loads(line)
        if event.get("type") != "diagnostic" or event["diagnostic"]["severity"] != "error":
            continue
        run, diagnostic = event.get("@testrun"), event["diagnostic"]
        assert run in expected and diagnostic["summary"] == "Invalid value for variable", event
        owners = [name for name, texts in messages.items()
                  if any(diagnostic["detail"].startswith(t + "\n") or diagnostic["detail"] == t for t in texts)]
        assert len(owners) == 1, f"{run}: no documented message matches {diagnostic['detail']!r}"
        failed[run] += owners
    for run, names in expected.items():
        assert sorted(failed[run]) == sorted(names), \
            f"{suite.name} run {run}: expected {sorted(names)}, got {failed[run]}"
    return len(expected)


def test_platform_variable_contract_offline(tf, tmp_path):
    """modules/shoal-platform/tests/variables.tftest.hcl on the module's variables
    alone: defaults valid, bad chart pins, overlays and keys refused."""
    work = variables_alone(PLATFORM, tmp_path / "platform")
    shutil.copy(PLATFORM / "tests" / "variables.tftest.hcl", work / "tests")
    tf("init", "-backend=false", "-no-color", f"-plugin-dir={tmp_path / 'no-providers'}", cwd=work)
    result = tf("test", "-no-color", cwd=work)
    summary = re.search(r"Success! (\d+) passed, 0 failed", result.stdout)
    assert summary and int(summary[1]) >= 8, result.stdout


@pytest.mark.parametrize("folder,suite", [(EKS, "validation.tftest.hcl"), (PLATFORM, "variables.tftest.hcl")],
                         ids=["eks", "platform"])
def test_bad_input_gets_the_documented_message(tf, tmp_path, folder, suite):
    work = variables_alone(folder, tmp_path / folder.name)
    assert check_messages(tf, folder, folder / "tests" / suite, work) >= 4


# The examples as written need helm and kustomization. Against the platform module's
# interface (its variables.tf and output names, with no resources, hence no
# providers), each example plans, eks-gpu against a mocked aws provider: argument
# names and types, and the EKS module's cluster_autoscaler output as the platform's
# input.

def against_platform_interface(tmp_path: Path) -> Path:
    copy = tmp_path / "terraform"
    shutil.copytree(TERRAFORM, copy, ignore=shutil.ignore_patterns(".terraform*", "terraform.tfstate*"))
    stub = copy / "modules" / "shoal-platform"
    names = outputs(parse(PLATFORM))
    for path in stub.glob("*.tf"):
        if path.name != "variables.tf":
            path.unlink()
    (stub / "outputs.tf").write_text("".join(f'output "{n}" {{\n  value = null\n}}\n' for n in names))
    (stub / "versions.tf").write_text('terraform {\n  required_version = ">= 1.9.0"\n}\n')
    for example in (copy / "examples").iterdir():
        main, versions = example / "main.tf", example / "versions.tf"
        text, n = re.subn(r'^provider "(helm|kustomization)" \{\n.*?^\}\n', "", main.read_text(),
                          flags=re.MULTILINE | re.DOTALL)
        assert n == 2, f"{example.name}: expected the helm and kustomization provider blocks"
        main.write_text(text)
        text, n = re.subn(r"^    (helm|kustomization) = \{\n.*?^    \}\n", "", versions.read_text(),
                          flags=re.MULTILINE | re.DOTALL)
        assert n == 2, f"{example.name}: expected helm and kustomization in required_providers"
        versions.write_text(text)
    return copy


COMPOSE_TEST = """
variables {
  subnet_ids = ["subnet-0123456789abcdef0", "subnet-0fedcba9876543210"]
  api_keys   = ["inference-key-0123456789abcdef"]
  admin_keys = ["operator-key-0123456789abcdef"]
}

run "composes" {
  command = plan
}
"""


@pytest.mark.parametrize("example", [EKS_EXAMPLE, EXISTING_EXAMPLE], ids=["eks-gpu", "existing-cluster"])
def test_example_plans_against_the_platform_interface(tf, tmp_path, example):
    copy = against_platform_interface(tmp_path)
    work = copy / "examples" / example.name
    (work / "tests").mkdir()
    if "aws" in required_providers(parse(example)):
        mirror = provider_mirror()
        shutil.copytree(EKS / "tests" / "mocks", work / "tests" / "mocks")
        header = 'mock_provider "aws" {\n  source = "./tests/mocks"\n}\n'
    else:
        mirror, header = tmp_path / "no-providers", ""
        # existing-cluster has no subnet_ids
        (work / "tests" / "compose.tftest.hcl").write_text(COMPOSE_TEST.replace(
            '  subnet_ids = ["subnet-0123456789abcdef0", "subnet-0fedcba9876543210"]\n', ""))
    if header:
        (work / "tests" / "compose.tftest.hcl").write_text(header + COMPOSE_TEST)
    tf("init", "-backend=false", "-no-color", f"-plugin-dir={mirror}", cwd=work)
    result = tf("test", "-no-color", cwd=work)  # validates the configuration, then plans
    assert "Success! 1 passed, 0 failed" in result.stdout, result.stdout


@pytest.mark.parametrize("folder", [PLATFORM, EKS_EXAMPLE, EXISTING_EXAMPLE],
                         ids=["platform", "eks-gpu", "existing-cluster"])
def test_terraform_validate_when_providers_are_available(tf, tmp_path, folder):
    """`terraform validate` of the platform module and of the examples as written
    needs the hashicorp/helm and kbst/kustomization providers from the registry."""
    copy = tmp_path / "terraform"
    shutil.copytree(TERRAFORM, copy, ignore=shutil.ignore_patterns(".terraform*", "terraform.tfstate*"))
    shutil.copytree(K8S, tmp_path / "k8s")
    work = copy / folder.relative_to(TERRAFORM)
    init = tf("init", "-backend=false", "-no-color", cwd=work, check=False, timeout=120)
    if init.returncode != 0:
        said = " ".join(init.stderr.split())
        said = said[said.find("Error:"):][:240] if "Error:" in said else said[-240:]
        pytest.skip("the hashicorp/helm and kbst/kustomization providers cannot be downloaded here (no registry "
                    "access; only hashicorp/aws is in the local mirror), so terraform validate of "
                    f"{folder.relative_to(TERRAFORM)} cannot run. Its variables, the examples' wiring and checkov "
                    f"run above. terraform init said: {said}")
    tf("validate", "-no-color", cwd=work)
