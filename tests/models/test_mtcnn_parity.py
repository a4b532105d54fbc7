"""MTCNN on the real ONNX files vs facenet-pytorch 2.6.0's MTCNN.detect (goldens in tests/golden/mtcnn/).

Parity means: same number of faces; for each (both in score order) box IoU >= 0.9999, score within 1e-5 and
every landmark within 0.01 pixel. Seen on this machine: IoU >= 0.99999, scores within 2.4e-7, landmarks within
0.0002 px; the bounds leave room for another CPU's float32 sums, not for another algorithm. Regenerate goldens
with tests/golden/make_mtcnn_goldens.py.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from app.pipelines.mtcnn import LANDMARK_NAMES, DetectionParams, MtcnnDetector, PnetPacking
from app.runtime import load_model, read_manifest, sha256_file
from tests.golden.make_mtcnn_goldens import CASES, case_image, image_sha256
from tests.helpers import MODELS_DIR, OnnxRunner

GOLDEN_DIR = Path(__file__).resolve().parents[1] / "golden" / "mtcnn"
MIN_IOU = 0.9999
SCORE_ATOL = 1e-5
LANDMARK_ATOL_PX = 0.01


@cache
def detector(workers: int = 1, packing: PnetPacking = "per_level") -> MtcnnDetector:
    """workers 1: one thread throughout; 2: as the service runs it (single-threaded sessions, two workers).
    packing 'packed': P-Net over one canvas of all levels (same strictness)."""
    pnet, rnet, onet = (OnnxRunner(MODELS_DIR / f"mtcnn_{net}.onnx", threads=1) for net in ("pnet", "rnet", "onet"))
    return MtcnnDetector(pnet, rnet, onet, workers=workers, packing=packing)


def golden(case: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((GOLDEN_DIR / f"{case}.json").read_text())
    return data


def params_of(data: dict[str, Any]) -> DetectionParams:
    p = data["params"]
    return DetectionParams(min_face_size=p["min_face_size"], thresholds=tuple(p["thresholds"]),
                           scale_factor=p["scale_factor"])


def iou(a: np.ndarray, b: np.ndarray) -> float:
    inter = max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union)


@pytest.mark.parametrize(("workers", "packing"), [(1, "per_level"), (2, "per_level"), (2, "packed")])
@pytest.mark.parametrize("case", sorted(CASES))
def test_detections_match_facenet_pytorch(case: str, workers: int, packing: PnetPacking) -> None:
    data = golden(case)
    image = case_image(case)
    if image_sha256(image) != data["image_sha256"]:
        pytest.fail(f"{case}: decoded pixels differ from the golden's (decoder change?); regenerate goldens")
    faces = detector(workers, packing).detect(image, params_of(data))
    assert len(faces) == len(data["boxes"])
    for face, box, score, points in zip(faces, data["boxes"], data["scores"], data["landmarks"], strict=True):
        assert iou(face.box, np.asarray(box)) >= MIN_IOU
        assert abs(face.score - score) <= SCORE_ATOL
        np.testing.assert_allclose(face.landmarks, np.asarray(points), rtol=0, atol=LANDMARK_ATOL_PX)
    assert [f.score for f in faces] == sorted((f.score for f in faces), reverse=True)


def test_goldens_cover_faces_and_no_faces() -> None:
    counts = {case: len(golden(case)["boxes"]) for case in CASES}
    assert counts["astronaut"] == 1 and counts["obama"] == 2  # shared/WEIGHTS.md: one face + a false positive
    assert counts["coffee"] == 0 and counts["chelsea"] == 0


@pytest.mark.parametrize("case", ["astronaut", "astronaut_mirrored"])
def test_landmark_order_is_the_images_left_first(case: str) -> None:
    (face,) = detector().detect(case_image(case))
    points = dict(zip(LANDMARK_NAMES, face.landmarks, strict=True))
    assert points["left_eye"][0] < points["nose"][0] < points["right_eye"][0]
    assert points["mouth_left"][0] < points["mouth_right"][0]
    assert max(points["left_eye"][1], points["right_eye"][1]) < points["nose"][1] < points["mouth_left"][1]
    x1, y1, x2, y2 = face.box
    assert all(x1 <= x <= x2 and y1 <= y <= y2 for x, y in face.landmarks)


def test_max_faces_keeps_the_largest() -> None:
    image = case_image("obama")
    everything = detector().detect(image)
    (largest,) = detector().detect(image, DetectionParams(max_faces=1))
    assert len(everything) == 2
    assert largest.area == max(f.area for f in everything)
    np.testing.assert_array_equal(largest.box, max(everything, key=lambda f: f.area).box)


def test_manifest_entries_load_through_the_runtime() -> None:
    entries = {e["id"]: e for e in read_manifest(MODELS_DIR) if e["id"].startswith("mtcnn-")}
    assert set(entries) == {"mtcnn-pnet", "mtcnn-rnet", "mtcnn-onet"}
    for entry in entries.values():
        assert entry["task"] == "face-detection"
        assert entry["sha256"] == sha256_file(MODELS_DIR / entry["file"])
        source = entry["sources"][0]
        assert (source["package"], source["version"]) == ("facenet-pytorch", "2.6.0")
    sessions = {i: load_model(e, MODELS_DIR, ["CPUExecutionProvider"], 1) for i, e in entries.items()}
    for session in sessions.values():
        session.warm_up()
    assert sessions["mtcnn-onet"].output_names == ["box_offsets", "landmarks", "face_prob"]
    faces = MtcnnDetector(sessions["mtcnn-pnet"], sessions["mtcnn-rnet"], sessions["mtcnn-onet"]).detect(
        case_image("astronaut"))
    assert len(faces) == 1 and faces[0].score > 0.99
