"""app/pipelines/recognition.py: re-detection of faces whose MTCNN box crosses the image border.

A stub detector stands in for MTCNN: it records the image and parameters it gets and answers faces in the
padded image's coordinates, so each rule (when to pad, by how much, with what, which face to keep, how it
comes back) is checked against hand-computed values. The real models on the real photo:
tests/models/test_dlib_model.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

import numpy as np
import pytest

from app.pipelines.mtcnn import DetectionParams, Face, MtcnnDetector
from app.pipelines.recognition import (
    BORDER_REDETECT_MIN_IOU,
    FaceRecognizer,
    _iou,
    border_overflow,
    redetect_border_face,
    redetect_border_faces,
)

HEIGHT, WIDTH = 60, 80
LANDMARKS = np.array([[10, 20], [30, 20], [20, 30], [12, 40], [28, 40]], np.float32)


def _face(box: list[float], landmarks: np.ndarray = LANDMARKS, score: float = 0.99) -> Face:
    return Face(box=np.array(box, np.float32), score=score, landmarks=np.asarray(landmarks, np.float32))


class StubDetector:
    """Answers `first` on the original image and `padded` (padded-image coordinates) on any other image."""

    def __init__(self, first: list[Face], padded: list[Face]) -> None:
        self.first, self.padded = first, padded
        self.calls: list[tuple[np.ndarray, DetectionParams]] = []

    def detect(self, image_rgb: np.ndarray, params: DetectionParams | None = None) -> list[Face]:
        assert params is not None
        self.calls.append((image_rgb, params))
        return self.first if image_rgb.shape[:2] == (HEIGHT, WIDTH) else self.padded


def _image() -> np.ndarray:
    rng = np.random.default_rng(3)
    return rng.integers(1, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)  # no zero pixel: the pad is told apart


def _redetect(stub: StubDetector, face: Face, params: DetectionParams | None = None) -> Face:
    return redetect_border_face(cast(MtcnnDetector, stub), _image(), face, params or DetectionParams())


@pytest.mark.parametrize(
    ("box", "expected"),
    [
        ([5, 5, 75, 55], 0),  # inside
        ([0, 0, 80, 60], 0),  # touching every edge is still inside
        ([-10.2, 5, 50, 55], 11),  # left, rounded up
        ([10, -3, 50, 55], 3),  # top
        ([10, 5, 85.5, 55], 6),  # right
        ([10, 5, 50, 61], 1),  # bottom
        ([-4, -2, 90, 70], 10),  # several sides: the worst one
    ],
)
def test_border_overflow(box: list[float], expected: int) -> None:
    assert border_overflow(np.array(box), HEIGHT, WIDTH) == expected


def test_iou() -> None:
    assert _iou(np.array([0, 0, 10, 10]), np.array([5, 0, 15, 10])) == pytest.approx(50 / 150)
    assert _iou(np.array([0, 0, 10, 10]), np.array([20, 20, 30, 30])) == 0.0


def test_a_face_inside_the_image_is_returned_untouched_without_detecting_again() -> None:
    face = _face([5, 5, 45, 55])
    stub = StubDetector([], [_face([0, 0, 10, 10])])
    assert _redetect(stub, face) is face
    assert stub.calls == []


def test_a_border_face_is_detected_again_in_the_zero_padded_image_and_shifted_back() -> None:
    face = _face([-12.5, 4, 40, 56])  # 12.5 px past the left edge -> pad 13 on every side
    pad = 13
    again = _face([-2 + pad, 5 + pad, 48 + pad, 55 + pad], LANDMARKS + pad, score=0.97)
    other = _face([60 + pad, 30 + pad, 80 + pad, 50 + pad])  # another face, no overlap
    stub = StubDetector([], [other, again])
    params = DetectionParams(min_face_size=24, thresholds=(0.5, 0.6, 0.8), scale_factor=0.6, max_faces=1)
    found = _redetect(stub, face, params)

    (padded, used), = stub.calls
    assert padded.shape == (HEIGHT + 2 * pad, WIDTH + 2 * pad, 3) and padded.dtype == np.uint8
    np.testing.assert_array_equal(padded[pad:-pad, pad:-pad], _image())
    inner = np.zeros(padded.shape[:2], bool)
    inner[pad:-pad, pad:-pad] = True
    assert not padded[~inner].any()  # zeros all round
    # Same detector settings, but every face: the largest face of the padded image need not be this one.
    assert used == DetectionParams(min_face_size=24, thresholds=(0.5, 0.6, 0.8), scale_factor=0.6)
    np.testing.assert_allclose(found.box, [-2, 5, 48, 55])
    np.testing.assert_allclose(found.landmarks, LANDMARKS)
    assert found.score == pytest.approx(0.97)


@pytest.mark.parametrize(
    "padded",
    [
        [],  # nothing found in the padded image
        [_face([30 + 8, 0 + 8, 70 + 8, 40 + 8])],  # only a face beside it (IoU with the first box: 0.10)
    ],
)
def test_without_a_matching_face_the_first_detection_is_kept(padded: list[Face]) -> None:
    face = _face([-8, 4, 40, 56])
    assert _redetect(StubDetector([], padded), face) is face


def test_an_overlap_above_the_floor_is_enough() -> None:
    face = _face([-10, 0, 10, 20])  # pad 10
    shifted = _face([0 + 10, 0 + 10, 20 + 10, 20 + 10])  # overlaps the first box by 200 / 600 = 1/3
    assert _iou(face.box, shifted.box - 10) == pytest.approx(1 / 3)
    assert BORDER_REDETECT_MIN_IOU <= 1 / 3
    assert _redetect(StubDetector([], [shifted]), face) is not face


class OnesEmbedder:
    input_names = ["chips"]
    output_names = ["descriptor"]

    def run(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        return [np.ones((len(feeds["chips"]), 128), np.float32)]


def test_embed_faces_reports_the_redetected_border_face() -> None:
    inside = _face([40, 5, 75, 55])
    border = _face([-6, 4, 30, 56])
    again = _face([-2 + 6, 5 + 6, 32 + 6, 55 + 6], LANDMARKS + 6)
    stub = StubDetector([inside, border], [again])
    recognizer = FaceRecognizer(cast(Any, stub), OnesEmbedder(), "stub")
    result = recognizer.embed_faces(_image(), DetectionParams())
    assert result.faces[0] is inside
    np.testing.assert_allclose(result.faces[1].box, [-2, 5, 32, 55])
    assert result.embeddings.shape == (2, 128)
    assert len(stub.calls) == 2  # the first detection, then one for the border face only


def test_many_border_faces_cost_one_detection_padded_by_the_largest_overflow() -> None:
    crowd = [_face([-3, 2, 15, 20], score=0.99), _face([70, -5, 85, 12], score=0.98),
             _face([20, 50, 35, 64], score=0.97), _face([30, 10, 50, 30], score=0.96)]  # the last one inside
    pad = 5  # the worst overflow: 5 past the top edge and 5 past the right
    stub = StubDetector([], [])
    found = redetect_border_faces(cast(MtcnnDetector, stub), _image(), crowd, DetectionParams())
    (padded, _), = stub.calls
    assert padded.shape == (HEIGHT + 2 * pad, WIDTH + 2 * pad, 3)
    assert all(a is b for a, b in zip(found, crowd, strict=True))  # nothing matched: all kept, in score order


def test_two_border_faces_never_take_the_same_redetected_face() -> None:
    left = _face([-4, 10, 20, 34], score=0.95)
    near = _face([-4, 14, 20, 38], score=0.94)  # overlaps `left` heavily: both would pick `again`
    pad = 4
    again = _face([-3 + pad, 11 + pad, 21 + pad, 35 + pad], LANDMARKS + pad, score=0.99)
    found = redetect_border_faces(cast(MtcnnDetector, StubDetector([], [again])), _image(), [left, near],
                                  DetectionParams())
    assert len(found) == 2
    assert sum(face is near for face in found) == 1 and sum(face.score == pytest.approx(0.99) for face in found) == 1
    np.testing.assert_allclose(found[0].box, [-3, 11, 21, 35])  # `left` overlaps it most; it took it


def test_replacements_are_put_back_in_score_order() -> None:
    inside = _face([30, 10, 50, 30], score=0.9)
    border = _face([-6, 4, 20, 40], score=0.8)
    again = _face([-5 + 6, 4 + 6, 21 + 6, 40 + 6], LANDMARKS + 6, score=0.999)
    found = redetect_border_faces(cast(MtcnnDetector, StubDetector([], [again])), _image(), [inside, border],
                                  DetectionParams())
    assert [face.score for face in found] == sorted((face.score for face in found), reverse=True)
    assert found[1] is inside and found[0].score == pytest.approx(0.999)
