# Two set-up commands, both idempotent:
#   make serve   installs what is needed and serves the embedded default model on 127.0.0.1:8080
#                (options: make serve ARGS="--port 8081 --model NAME=FOLDER"; the CLI is .venv/bin/shoal)
#   make test    installs what is needed (test tools included) and runs the whole test suite
VENV   ?= .venv
PYTHON ?= python3
# The CPU build of torch; override (e.g. TORCH='torch==2.9.1') or preinstall your own build.
TORCH  ?= torch==2.13.0
BIN     = $(VENV)/bin

.PHONY: serve test install install-dev benchmark clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.torch: | $(BIN)/python
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install --quiet "$(TORCH)"
	touch $@

$(VENV)/.installed: pyproject.toml $(VENV)/.torch
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml $(VENV)/.installed scripts/install-deploy-tools.sh scripts/install-gliner.sh \
		scripts/install-llmlingua.sh scripts/install-reference-venv.sh
	$(BIN)/pip install --quiet -e '.[dev]'
	# PyLate is the ColBERT reference; its pins would replace torch, transformers and
	# sentence-transformers, so it goes in without them (the tests shim the two API drifts).
	$(BIN)/pip install --quiet --no-deps pylate==1.6.0
	scripts/install-deploy-tools.sh $(VENV)
	# gliner is the GLiNER reference; it pins another transformers, so it has a venv of its own.
	TORCH='$(TORCH)' PYTHON='$(PYTHON)' scripts/install-gliner.sh
	# llmlingua is the reference of /v1/compress (LLMLingua-2); it has a venv of its own too.
	TORCH='$(TORCH)' PYTHON='$(PYTHON)' scripts/install-llmlingua.sh
	touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

# Options go through ARGS: make serve ARGS="--port 8081 --model rerank=/models/bge-reranker-base"
serve: install
	$(BIN)/shoal serve $(ARGS)

test: install-dev
	$(BIN)/python -m pytest -q

benchmark: install-dev
	$(BIN)/python benchmarks/throughput.py

clean:
	rm -rf $(VENV) .gliner-venv .llmlingua-venv .pytest_cache
