#!/usr/bin/env bash
# Create the reference venv for MTCNN parity goldens and the detection benchmark:
# facenet-pytorch==2.6.0 (installed --no-deps: it pins torch<2.3) beside torch==2.14.1 + torchvision==0.29.1,
# the newest pair that imports together here (pins are exact so pip never pulls an open range).
# Usage: bash bench/make_ref_venv.sh   (idempotent; rerun to repair)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.cache/ref-mtcnn-venv
PYTHON=${PYTHON:-python3.11}
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet torch==2.14.1 torchvision==0.29.1 "numpy<3" pillow requests tqdm opencv-python-headless
# The wheel is fetched into the shared cache by `python -m export.fetch`; fall back to the registry by exact version.
WHEEL=$(ls .cache/packages/facenet_pytorch-2.6.0-*.whl 2>/dev/null | head -1 || true)
"$VENV/bin/python" -m pip install --quiet --no-deps "${WHEEL:-facenet-pytorch==2.6.0}"
"$VENV/bin/python" -c "import torch, torchvision, facenet_pytorch; print('ref venv ok:', torch.__version__, torchvision.__version__)"
