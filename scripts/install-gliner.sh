#!/usr/bin/env bash
# The gliner package in an environment of its own (default .gliner-venv), the reference that
# tests/engine/test_gliner_parity.py builds tiny GLiNER models with and compares against.
# gliner pins another transformers than Shoal's, so it cannot share the main venv.
#
#   scripts/install-gliner.sh [VENV]
#
# Pinned so that CI and developers compare against the same package. Idempotent: a second
# run with everything in place changes nothing. torch is the CPU build: `pip install
# torch==2.13.0` takes the local CPU wheel on the project's machines (pip's find-links);
# elsewhere set TORCH_INDEX to PyTorch's CPU index (https://download.pytorch.org/whl/cpu).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${1:-$ROOT/.gliner-venv}"
PYTHON="${PYTHON:-python3}"
TORCH="${TORCH:-torch==2.13.0}"
PINS=("gliner==0.2.29" "transformers==5.16.1")

log() { printf '[install-gliner] %s\n' "$*" >&2; }

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
# torch pinned again so gliner's resolver cannot swap it for another build
"$VENV/bin/python" -m pip install --quiet "${EXTRA[@]}" "$TORCH" "${PINS[@]}"
"$VENV/bin/python" -c "import gliner, torch, transformers; print('[install-gliner] done: gliner', \
gliner.__version__, '| torch', torch.__version__, '| transformers', transformers.__version__)" >&2
