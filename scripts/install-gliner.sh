#!/usr/bin/env bash
# The gliner package in an environment of its own (default .gliner-venv), the reference that
# tests/engine/test_gliner_parity.py builds tiny GLiNER models with and compares against.
# gliner pins another transformers than Shoal's, so it cannot share the main venv.
#
#   scripts/install-gliner.sh [VENV]
#
# Pinned so that CI and developers compare against the same package; idempotent
# (scripts/install-reference-venv.sh does the work).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
exec "$ROOT/scripts/install-reference-venv.sh" gliner "${1:-$ROOT/.gliner-venv}" "gliner==0.2.29" "transformers==5.16.1"
