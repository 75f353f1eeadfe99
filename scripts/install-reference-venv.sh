#!/usr/bin/env bash
# A reference package in a venv of its own: for packages whose pins would move the main
# venv's transformers (gliner) or bring their own stack (llmlingua). Used by
# scripts/install-gliner.sh and scripts/install-llmlingua.sh, which name the venv and pins.
#
#   scripts/install-reference-venv.sh NAME VENV PIN...    (PIN: package==version)
#
# Idempotent: with every pin (and $TORCH) installed at its version, nothing changes. torch is
# the CPU build: `pip install torch==2.13.0` takes the local CPU wheel on the project's
# machines (pip's find-links); elsewhere set TORCH_INDEX to PyTorch's CPU index
# (https://download.pytorch.org/whl/cpu).
set -euo pipefail

NAME="$1"; VENV="$2"; shift 2
PINS=("$@")
PYTHON="${PYTHON:-python3}"
TORCH="${TORCH:-torch==2.13.0}"

log() { printf '[install-%s] %s\n' "$NAME" "$*" >&2; }

if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" - "$TORCH" "${PINS[@]}" <<'PY'
import sys
from importlib import metadata
for spec in sys.argv[1:]:
    name, version = spec.split("==")
    try:
        found = metadata.version(name)
    except metadata.PackageNotFoundError:
        sys.exit(1)
    if found.split("+")[0] != version:
        sys.exit(1)
PY
then
    log "up to date: $VENV"
    exit 0
fi

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
EXTRA=()
if [ -n "${TORCH_INDEX:-}" ]; then EXTRA=(--extra-index-url "$TORCH_INDEX"); fi
log "installing $TORCH (the CPU build), then ${PINS[*]} into $VENV"
"$VENV/bin/python" -m pip install --quiet "${EXTRA[@]}" "$TORCH"
# torch pinned again so the package's resolver cannot swap it for another build
"$VENV/bin/python" -m pip install --quiet "${EXTRA[@]}" "$TORCH" "${PINS[@]}"
"$VENV/bin/python" - "$TORCH" "${PINS[@]}" <<'PY' >&2
import sys
from importlib import metadata
print("done:", " | ".join(f"{spec.split('==')[0]} {metadata.version(spec.split('==')[0])}" for spec in sys.argv[1:]))
PY
