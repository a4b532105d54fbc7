# syntax=docker/dockerfile:1
# Two images from one file:
#   docker build --target cpu -t atelier:cpu .   (default: the last stage below is `cpu`)
#   docker build --target gpu -t atelier:gpu .   (CUDA 13 + cuDNN 9 runtime, onnxruntime-gpu)
# Both serve the ONNX files committed in models/; no torch is installed.
# The CUDA major of CUDA_IMAGE must be the one the pinned onnxruntime-gpu wheel was built for (its metadata:
# nvidia-cuda-runtime~=13.0 for 1.31.1), and both images run the same Python minor as the dev venv and CI;
# tests/unit/test_images.py checks both against the wheel's metadata (make test fetches it).

ARG PYTHON_VERSION=3.11
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG CUDA_IMAGE=nvidia/cuda:13.0.1-cudnn-runtime-ubuntu24.04
# uv installs a standalone CPython of PYTHON_VERSION on the CUDA image: Ubuntu 24.04's own python3 is 3.12.
ARG UV_IMAGE=ghcr.io/astral-sh/uv:0.13.9

# ---- CPU: build the venv -------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS build-cpu
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv /opt/venv
COPY pyproject.toml README.md ./
COPY app ./app
COPY export/__init__.py ./export/__init__.py
# the client package, which the root pyproject finds under client/ (the `atelier` command's batch subcommands)
COPY client/atelier_client ./client/atelier_client
RUN /opt/venv/bin/pip install ".[cpu]"

# ---- GPU: venv on the CUDA runtime image --------------------------------------------------------
FROM ${UV_IMAGE} AS uv

FROM ${CUDA_IMAGE} AS gpu
ARG PYTHON_VERSION
ENV UV_NO_CACHE=1 UV_PYTHON_INSTALL_DIR=/opt/python UV_PYTHON_PREFERENCE=only-managed DEBIAN_FRONTEND=noninteractive
COPY --from=uv /uv /usr/local/bin/uv
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
RUN uv python install "${PYTHON_VERSION}" && uv venv --python "${PYTHON_VERSION}" /opt/venv
COPY pyproject.toml README.md ./
COPY app ./app
COPY export/__init__.py ./export/__init__.py
# the client package, which the root pyproject finds under client/ (the `atelier` command's batch subcommands)
COPY client/atelier_client ./client/atelier_client
RUN uv pip install --python /opt/venv/bin/python ".[gpu]" && rm -rf /src
RUN useradd --system --uid 10001 --no-create-home atelier
COPY models /srv/atelier/models
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    ATELIER_MODELS_DIR=/srv/atelier/models \
    ATELIER_HOST=0.0.0.0 \
    ATELIER_PROVIDERS=auto \
    ATELIER_REQUIRE_GPU=true
USER 10001
WORKDIR /srv/atelier
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
    CMD ["atelier", "healthcheck"]
CMD ["atelier", "serve"]

# ---- CPU runtime (default target) ---------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS cpu
RUN useradd --system --uid 10001 --no-create-home atelier
COPY --from=build-cpu /opt/venv /opt/venv
COPY models /srv/atelier/models
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    ATELIER_MODELS_DIR=/srv/atelier/models \
    ATELIER_HOST=0.0.0.0
USER 10001
WORKDIR /srv/atelier
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["atelier", "healthcheck"]
CMD ["atelier", "serve"]
