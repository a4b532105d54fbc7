# syntax=docker/dockerfile:1
# Two images from one file:
#   docker build --target cpu -t atelier:cpu .   (default: the last stage below is `cpu`)
#   docker build --target gpu -t atelier:gpu .   (CUDA 12 + cuDNN 9 runtime, onnxruntime-gpu)
# Both serve the ONNX files committed in models/; no torch is installed.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG CUDA_IMAGE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04

# ---- CPU: build the venv -------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS build-cpu
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv /opt/venv
COPY pyproject.toml README.md ./
COPY app ./app
COPY export/__init__.py ./export/__init__.py
RUN /opt/venv/bin/pip install ".[cpu]"

# ---- GPU: venv on the CUDA runtime image --------------------------------------------------------
FROM ${CUDA_IMAGE} AS gpu
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 DEBIAN_FRONTEND=noninteractive
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
RUN python3 -m venv /opt/venv
COPY pyproject.toml README.md ./
COPY app ./app
COPY export/__init__.py ./export/__init__.py
RUN /opt/venv/bin/pip install ".[gpu]" && rm -rf /src
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
    CMD ["python3", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=3).status != 200)"]
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
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=3).status != 200)"]
CMD ["atelier", "serve"]
