"""models/dlib_face_resnet_int8.onnx against the float32 model and dlib's goldens (tests/golden/dlib/).

The export's gate (export/convert_dlib.py) checked it on faces our MTCNN found; here the same bars hold on the
goldens' own chips: dlib's 150x150 chips and the 12 faces aligned on the goldens' landmarks.
"""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from app.pipelines.align import align_face
from app.pipelines.verify import DEFAULT_THRESHOLD, DLIB_L2_THRESHOLD, embed
from app.runtime import ModelSession, load_model, read_manifest
from tests.models.test_dlib_model import GOLDEN, MODELS, _photo

MIN_COSINE_VS_FP32 = 0.995  # issue #11


def _load(model_id: str) -> ModelSession:
    entry = next(e for e in read_manifest(MODELS) if e["id"] == model_id)
    return load_model(entry, MODELS, ["CPUExecutionProvider"], threads=2)  # checks the manifest sha256


@pytest.fixture(scope="module")
def models() -> tuple[ModelSession, ModelSession]:
    return _load("dlib-face-resnet"), _load("dlib-face-resnet-int8")


@pytest.fixture(scope="module")
def face_chips() -> tuple[np.ndarray, list[dict]]:
    faces = list(json.loads((GOLDEN / "faces.json").read_text())["faces"])
    chips = np.stack([align_face(_photo(f["photo"], f["mirrored"]), np.asarray(f["aligned_landmarks"]))
                      for f in faces])
    return chips, faces


def test_manifest_records_the_gate_and_the_variant() -> None:
    entry = next(e for e in read_manifest(MODELS) if e["id"] == "dlib-face-resnet-int8")
    assert entry["int8_of"] == "dlib-face-resnet" and entry["precision"] == "int8"
    assert entry["providers_hint"] == "cpu" and entry["gate"]["held"] is True
    assert entry["gate"]["min_cosine_vs_fp32"] == MIN_COSINE_VS_FP32
    assert entry["parity"]["decision_flips"]["max_abs_diff"] == 0
    assert entry["inputs"][0]["shape"] == ["batch", 3, 150, 150] and entry["outputs"][0]["shape"] == ["batch", 128]
    assert entry["bytes"] < 8_000_000  # about a quarter of the float32 file


def test_cosine_to_float32_on_dlibs_chips(models: tuple[ModelSession, ModelSession]) -> None:
    chips = np.load(GOLDEN / "chips_dlib.npz")["chips"]
    fp32, int8 = (embed(m, chips).astype(np.float64) for m in models)
    cosines = np.sum(fp32 * int8, axis=1)
    assert cosines.min() >= MIN_COSINE_VS_FP32, cosines


def test_cosine_and_every_golden_decision(models: tuple[ModelSession, ModelSession],
                                          face_chips: tuple[np.ndarray, list[dict]]) -> None:
    chips, faces = face_chips
    fp32, int8 = (embed(m, chips).astype(np.float64) for m in models)
    cosines = np.sum(fp32 * int8, axis=1)
    assert cosines.min() >= MIN_COSINE_VS_FP32, dict(zip((f["photo"] for f in faces), cosines, strict=True))
    raw = np.array([f["dlib_descriptor"] for f in faces])
    for i, j in itertools.combinations(range(len(faces)), 2):
        dlib_same = np.linalg.norm(raw[i] - raw[j]) <= DLIB_L2_THRESHOLD
        fp32_same = float(fp32[i] @ fp32[j]) >= DEFAULT_THRESHOLD
        int8_same = float(int8[i] @ int8[j]) >= DEFAULT_THRESHOLD
        assert int8_same == fp32_same == dlib_same, (faces[i]["photo"], faces[j]["photo"])


def test_dynamic_batch(models: tuple[ModelSession, ModelSession]) -> None:
    int8 = models[1]
    chips = np.load(GOLDEN / "chips_dlib.npz")["chips"]
    batch = np.ascontiguousarray(chips.transpose(0, 3, 1, 2), dtype=np.float32)
    many = int8.run({"image": batch})[0]
    one = int8.run({"image": batch[:1]})[0]
    assert many.shape == (len(chips), 128)
    np.testing.assert_allclose(many[:1], one, atol=1e-4)
