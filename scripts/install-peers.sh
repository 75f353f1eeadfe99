#!/usr/bin/env bash
# Builds the CPU peers' environment that benchmarks/throughput.py runs its peers in:
# sentence-transformers with its ONNX Runtime and OpenVINO backends. Their packages pin an
# older transformers than the main venv's, hence a venv of their own.
#
#   scripts/install-peers.sh VENV          e.g. scripts/install-peers.sh /tmp/peers
#   python benchmarks/throughput.py --peers-python VENV/bin/python
#
# Reproducible: the versions the results were measured with are pinned below (the results
# files record what each run found). Idempotent: a second run with everything in place
# changes nothing. Never run by CI (the benchmarks are not tests).
#
# torch is the CPU build: `pip install torch==2.13.0` takes the local CPU wheel on the
# project's machines (pip's find-links); elsewhere set TORCH_INDEX to PyTorch's CPU index,
# e.g. TORCH_INDEX=https://download.pytorch.org/whl/cpu.
set -euo pipefail

VENV="${1:?usage: scripts/install-peers.sh VENV}"
PYTHON="${PYTHON:-python3}"
TORCH="${TORCH:-torch==2.13.0}"
PINS=(
    "sentence-transformers[onnx,openvino]==5.7.0"
    "transformers==4.57.6"
    "onnxruntime==1.32.0"
    "openvino==2026.4.1"
    "optimum==2.1.0"
    "optimum-intel==1.27.0"
    "optimum-onnx==0.1.0"
)

log() { printf '[install-peers] %s\n' "$*" >&2; }

if [ ! -x "$VENV/bin/python" ]; then
    log "creating $VENV"
    "$PYTHON" -m venv "$VENV"
fi

# Already in place? Compare installed versions with the pins (no index is consulted).
if "$VENV/bin/python" - "$TORCH" "${PINS[@]}" <<'EOF'
import re, sys
from importlib import metadata
for spec in sys.argv[1:]:
    name, version = re.sub(r"\[.*\]", "", spec).split("==")
    try:
        found = metadata.version(name)
    except metadata.PackageNotFoundError:
        sys.exit(1)
    if found.split("+")[0] != version:
        sys.exit(1)
EOF
then
    log "up to date: $VENV"
    exit 0
fi

EXTRA=()
if [ -n "${TORCH_INDEX:-}" ]; then EXTRA=(--extra-index-url "$TORCH_INDEX"); fi
log "installing $TORCH first (the CPU build), then the peers"
"$VENV/bin/python" -m pip install --quiet "${EXTRA[@]}" "$TORCH"
# torch pinned again so the peers' resolver cannot swap it for another build
"$VENV/bin/python" -m pip install --quiet "${EXTRA[@]}" "$TORCH" "${PINS[@]}"
"$VENV/bin/python" -c "import torch, sentence_transformers, onnxruntime, openvino, optimum.intel; \
print('[install-peers] torch', torch.__version__, '| sentence-transformers', sentence_transformers.__version__, \
'| onnxruntime', onnxruntime.__version__, '| openvino', openvino.__version__)" >&2
log "done: python benchmarks/throughput.py --peers-python $VENV/bin/python"
