#!/usr/bin/env bash
# Builds Shoal's container image from the Dockerfile, idempotently: a second run reuses
# the cached base tarball, the imported base image and every unchanged layer.
#
#   scripts/build-image.sh                  # ghcr.io/shoal-ai/shoal:<version in pyproject.toml>
#   BASE=python:3.11-slim-bookworm scripts/build-image.sh
#   SHOAL_IMAGE=registry.example.com/shoal SHOAL_IMAGE_TAG=dev scripts/build-image.sh
#
# The base (BASE):
#   local  a Debian bookworm base made here, with no registry: `debootstrap --variant=minbase`
#          (python3 3.11, python3-venv, ca-certificates) from the Debian mirror apt uses,
#          cached as a tarball under $SHOAL_IMAGE_CACHE and imported as
#          localhost/debian-base:bookworm. Needs root. What CI uses.
#   auto   (the default) `local` under CI or when no registry answers; otherwise the slim
#          Python 3.11 image (python:3.11-slim-bookworm), as with any registry-connected
#          Docker or podman.
#   IMAGE  any other base image (e.g. python:3.11-slim-bookworm).
#
# The engine is podman when installed (as root with `--runtime runc` and explicit ulimits:
# crun fails on hybrid cgroups), else a Docker that answers `docker info`.
# pip inside the build uses this machine's pip configuration (index, extra indexes, wheel
# folders, constraints, CA bundle): merged into one pip.conf and mounted read-only at
# build time together with the files and folders it names; nothing of it is copied into
# the image. When a configured wheel folder holds the CPU torch wheel for cp311, it is used
# instead of the PyTorch CPU index.
#
# Environment: BASE, SHOAL_IMAGE (ghcr.io/shoal-ai/shoal), SHOAL_IMAGE_TAG (the version),
# SHOAL_IMAGE_CACHE (/var/cache/shoal-image), DEBIAN_MIRROR (apt's), and the Dockerfile's
# TORCH, TORCH_INDEX, FLASH_ATTN (and SHOAL_IMAGE_PYTHON as PYTHON), passed on as build
# arguments when set. The CUDA variant (tagged <version>-cuda, what k8s/overlays/gpu runs;
# it needs a registry for its base and is not built in CI):
#   BASE=nvidia/cuda:12.8.1-runtime-ubuntu24.04 TORCH=torch==2.13.0+cu128 \
#   TORCH_INDEX=https://download.pytorch.org/whl/cu128 FLASH_ATTN=<wheel URL> \
#   SHOAL_IMAGE_TAG=0.1.0-cuda scripts/build-image.sh
# Prints the image reference as its last line.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
log() { printf '[build-image] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

VERSION="$(sed -n 's/^version *= *"\([^"]*\)".*/\1/p' "$ROOT/pyproject.toml" | head -n1)"
IMAGE="${SHOAL_IMAGE:-ghcr.io/shoal-ai/shoal}"
TAG="${SHOAL_IMAGE_TAG:-$VERSION}"
REF="$IMAGE:$TAG"
CACHE="${SHOAL_IMAGE_CACHE:-/var/cache/shoal-image}"
BASE="${BASE:-auto}"
SLIM_BASE="python:3.11-slim-bookworm"
LOCAL_BASE="localhost/debian-base:bookworm"
SUITE="bookworm"  # Debian 12: python3 is 3.11, as in the slim base
INCLUDE="python3,python3-venv,ca-certificates"

# --- engine ----------------------------------------------------------------------------
if command -v podman >/dev/null; then
    ENGINE=podman
    [ "$(id -u)" -eq 0 ] || die "run as root (podman here runs rootful with runc; try: sudo $0)"
elif command -v docker >/dev/null && docker info >/dev/null 2>&1; then
    ENGINE=docker
else
    die "no podman and no running Docker (scripts/install-deploy-tools.sh installs podman)"
fi
log "engine: $ENGINE ($($ENGINE --version 2>/dev/null | head -n1))"

in_ci() { case "${CI:-}" in ""|0|false|no) return 1 ;; *) return 0 ;; esac; }

# --- base ------------------------------------------------------------------------------
if [ "$BASE" = auto ]; then
    if in_ci; then
        BASE=local
    elif $ENGINE image inspect "$SLIM_BASE" >/dev/null 2>&1 \
            || timeout 300 "$ENGINE" pull -q "$SLIM_BASE" >/dev/null 2>&1; then
        BASE="$SLIM_BASE"
    else
        log "no registry answers for $SLIM_BASE: building a local Debian base"
        BASE=local
    fi
fi

debian_mirror() {
    local uri
    uri="$(sed -n 's/^URIs: *\([^ ]*\).*/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null \
        | grep -v -- '-security' | head -n1 || true)"
    [ -n "$uri" ] || uri="$(awk '$1 == "deb" && $0 !~ /security/ { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { print $i; exit } }' \
        /etc/apt/sources.list 2>/dev/null || true)"
    echo "${uri:-http://deb.debian.org/debian}"
}

build_local_base() {
    [ "$ENGINE" = podman ] || die "BASE=local needs podman (docker: use BASE=$SLIM_BASE)"
    command -v debootstrap >/dev/null || die "debootstrap is not installed (scripts/install-deploy-tools.sh)"
    local mirror key tarball label
    mirror="${DEBIAN_MIRROR:-$(debian_mirror)}"
    key="$(printf '%s %s %s' "$SUITE" "$INCLUDE" "minbase-v1" | sha256sum | cut -c1-12)"
    tarball="$CACHE/debian-$SUITE-minbase-$key.tar"
    mkdir -p "$CACHE"
    if [ -s "$tarball" ]; then
        log "base tarball cached: $tarball"
    else
        local rootfs started
        rootfs="$(mktemp -d "$CACHE/rootfs.XXXXXX")"
        trap 'rm -rf "$rootfs" "$tarball.tmp"' EXIT
        started=$SECONDS
        log "debootstrap $SUITE (minbase + $INCLUDE) from $mirror"
        debootstrap --variant=minbase --include="$INCLUDE" "$SUITE" "$rootfs" "$mirror" >"$CACHE/debootstrap.log" 2>&1 \
            || { tail -n 30 "$CACHE/debootstrap.log" >&2; die "debootstrap failed (log: $CACHE/debootstrap.log)"; }
        # What an image needs no copy of: downloaded packages, package lists, docs.
        rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/lib/apt/lists/* \
            "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* "$rootfs"/var/log/*.log
        tar --numeric-owner -C "$rootfs" -cf "$tarball.tmp" .
        mv "$tarball.tmp" "$tarball"
        rm -rf "$rootfs"
        trap - EXIT
        log "base tarball made in $((SECONDS - started)) s: $tarball ($(du -h "$tarball" | cut -f1))"
    fi
    label="$(basename "$tarball")"
    if [ "$(podman image inspect --format '{{index .Labels "shoal.base.tarball"}}' "$LOCAL_BASE" 2>/dev/null || true)" = "$label" ]; then
        log "base image present: $LOCAL_BASE"
    else
        log "importing $LOCAL_BASE"
        podman import --quiet \
            --change "LABEL shoal.base.tarball=$label" \
            --change "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
            --change "ENV LANG=C.UTF-8" \
            --change 'CMD ["/bin/bash"]' \
            "$tarball" "$LOCAL_BASE" >/dev/null
    fi
}

if [ "$BASE" = local ]; then
    build_local_base
    BASE="$LOCAL_BASE"
fi
log "base: $BASE"

# --- pip configuration, mounted read-only at build time ---------------------------------
args=(--build-arg "BASE=$BASE" --build-arg "VERSION=$VERSION")
mounts=()
# The Dockerfile's other build arguments, when set (the CUDA variant sets them all).
for name in TORCH TORCH_INDEX FLASH_ATTN; do
    [ -z "${!name+set}" ] || args+=(--build-arg "$name=${!name}")
done
[ -z "${SHOAL_IMAGE_PYTHON:-}" ] || args+=(--build-arg "PYTHON=$SHOAL_IMAGE_PYTHON")
workdir="$(mktemp -d)"
trap 'rm -rf "$workdir"' EXIT
LOGS="${TMPDIR:-/tmp}/shoal-image-build"  # the engine's full output, kept for a failed build
mkdir -p "$LOGS"
if [ "$ENGINE" = podman ]; then
    # `pip config list` merges the global, user and site files and PIP_* variables
    # (":env:" entries, which win). Written as one file, mounted as the build's /etc/pip.conf.
    pip_python="$(command -v python3 || true)"
    if [ -n "$pip_python" ] && "$pip_python" -m pip --version >/dev/null 2>&1; then
        "$pip_python" -m pip config list 2>/dev/null | "$pip_python" -c '
import re, sys
from pathlib import Path
sections, paths = {}, []
lines = sys.stdin.read().splitlines()
# file settings first, then the environment (which wins)
for line in sorted(lines, key=lambda l: l.startswith(":env:")):
    m = re.match(r"^(:env:|[\w-]+)\.([\w-]+)=(.*)$", line)
    if not m:
        continue
    section, key, value = m[1], m[2], m[3].strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\x27\"":
        value = value[1:-1]
    section = "global" if section == ":env:" else section
    sections.setdefault(section, {})[key] = value
    if key in ("cert", "client-cert", "constraint", "find-links", "index-url", "extra-index-url"):
        for item in value.split():
            path = item[len("file://"):] if item.startswith("file://") else item
            # an index folder`s pages link to files beside it (../../files/...): mount its parent
            if key.endswith("index-url") and Path(path).name == "simple":
                path = str(Path(path).parent)
            if path.startswith("/") and Path(path).exists():
                paths.append(path.rstrip("/") or "/")
conf = Path(sys.argv[1])
conf.write_text("".join(f"[{s}]\n" + "".join(f"{k} = {v}\n" for k, v in kv.items()) for s, kv in sections.items()))
Path(sys.argv[2]).write_text("".join(f"{p}\n" for p in dict.fromkeys(paths)))
' "$workdir/pip.conf" "$workdir/paths"
        if [ -s "$workdir/pip.conf" ]; then
            log "pip configuration for the build: $(tr '\n' ' ' <"$workdir/pip.conf")"
            mounts+=(--volume "$workdir/pip.conf:/etc/pip.conf:ro")
            while IFS= read -r path; do
                mounts+=(--volume "$path:$path:ro")
                # A CPU torch wheel for cp311 in a wheel folder: use it, not the CPU index
                # (unless TORCH_INDEX is set, as for the CUDA variant).
                if [ -z "${TORCH_INDEX+set}" ] && [ -d "$path" ] \
                        && compgen -G "$path/torch-*+cpu-cp311-*.whl" >/dev/null; then
                    log "CPU torch wheel found in $path: no PyTorch index needed"
                    args+=(--build-arg "TORCH_INDEX=")
                fi
            done <"$workdir/paths"
        fi
    fi
    hard="$(ulimit -Hn)"
    [ "$hard" = unlimited ] && hard=65536
    nofile=$(( hard < 65536 ? hard : 65536 ))
    # docker format: keeps SHELL (the OCI format drops it) and is what registries expect.
    args+=(--runtime runc --ulimit "nofile=$nofile:$nofile" --ulimit "nproc=32768:32768" --layers --format docker)
elif [ "$ENGINE" = docker ]; then
    log "docker: the build uses pip's defaults (no build-time mounts); torch comes from the PyTorch CPU index"
fi

# --- build context: a snapshot ----------------------------------------------------------
# The passes below must see the same files: a snapshot of what .dockerignore lets in (its
# `!` lines), so an edit made while the build runs cannot make one pass differ from another.
context="$workdir/context"
mkdir -p "$context"
mapfile -t allowed < <(sed -n 's|^!\(.*[^/]\)/*$|\1|p' "$ROOT/.dockerignore")
tar -C "$ROOT" --exclude=__pycache__ --exclude='*.pyc' --exclude='*.egg-info' \
    -cf - Dockerfile .dockerignore "${allowed[@]}" | tar -C "$context" -xf -

# --- build -----------------------------------------------------------------------------
# Build-time mounts (podman --volume) apply to every RUN, and each leaves an empty mount
# point in the layer it runs in. So only the builder stage, which the image does not ship,
# runs with them: (1) the `python` stage is built without mounts, (2) the builder with
# them, (3) the whole image without them, reusing (1) and (2) from the layer cache
# (buildah's cache key does not include mounts; (3) checks that no builder step ran again).
build() {  # build LOG [ARGS...]
    local log="$1"; shift
    $ENGINE build "${args[@]}" "$@" --file "$context/Dockerfile" "$context" >"$log" 2>&1 \
        || { tail -n 60 "$log" >&2; die "$ENGINE build failed (log: $log)"; }
    grep -E '^(\[[0-9]+/[0-9]+\] )?(STEP [0-9]+/[0-9]+: (RUN|COPY|FROM)|--> Using cache|COMMIT)' "$log" \
        | sed -E 's/^/[build-image]   /; s/(.{0,150}).*/\1/' >&2 || true
}
previous="$($ENGINE image inspect --format '{{.Id}}' "$REF" 2>/dev/null || true)"
started=$SECONDS
if [ ${#mounts[@]} -gt 0 ]; then
    log "building the python stage (no mounts)"
    build "$LOGS/python.log" --target python
    log "building the builder stage (pip configuration mounted read-only)"
    build "$LOGS/builder.log" --target builder "${mounts[@]}"
    log "building $REF (no mounts; builder from the cache)"
    build "$LOGS/image.log" --tag "$REF"
    # Every builder step must have come from the cache: one that ran had no pip config.
    if ! awk '
            /STEP [0-9]+\/[0-9]+: / && pending != "" { print pending; bad = 1; exit }
            /STEP [0-9]+\/[0-9]+: FROM / { builder = ($0 ~ / AS builder$/) }
            builder && /STEP [0-9]+\/[0-9]+: (RUN|COPY) / { pending = $0 }
            /^--> Using cache/ { pending = "" }
            END { if (!bad && pending != "") { print pending; bad = 1 } exit bad }' \
            "$LOGS/image.log" >"$workdir/rebuilt"; then
        die "the builder stage ran again without the pip configuration: $(cat "$workdir/rebuilt")"
    fi
else
    log "building $REF"
    build "$LOGS/image.log" --tag "$REF"
fi
current="$($ENGINE image inspect --format '{{.Id}}' "$REF")"
size="$($ENGINE image inspect --format '{{.Size}}' "$REF")"
log "built $REF in $((SECONDS - started)) s: $(( size / 1024 / 1024 )) MiB"
# The image this tag replaced is unreferenced now: drop it, or each rebuild leaves a GiB.
if [ -n "$previous" ] && [ "$previous" != "$current" ]; then
    if $ENGINE image rm "$previous" >/dev/null 2>&1; then log "removed the previous $REF (${previous:0:12})"; fi
fi
echo "$REF"
