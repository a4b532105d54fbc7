"""app/pipelines/align.py: weighted similarity fit, template, chip warp; goldens from dlib's own chips."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from app.errors import InvalidParameter
from app.pipelines.align import (
    CHIP_SIZE,
    DLIB_CHIP_TEMPLATE,
    LANDMARK_WEIGHTS,
    align_face,
    align_faces,
    chip_transform,
    similarity_transform,
)

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "dlib" / "faces.json"


def _similarity(angle_deg: float, scale: float, tx: float, ty: float) -> np.ndarray:
    a = math.radians(angle_deg)
    return np.array(
        [[scale * math.cos(a), -scale * math.sin(a), tx], [scale * math.sin(a), scale * math.cos(a), ty]]
    )


def _apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ matrix[:, :2].T + matrix[:, 2]


def _image_landmarks(image_to_chip: np.ndarray) -> np.ndarray:
    """Landmarks in an image whose chip transform is `image_to_chip`: the template mapped back."""
    full = np.vstack([image_to_chip, [0, 0, 1]])
    return _apply(np.linalg.inv(full)[:2], DLIB_CHIP_TEMPLATE)


@pytest.mark.parametrize("weights", [None, LANDMARK_WEIGHTS, np.array([1.0, 2.0, 3.0, 4.0, 5.0])])
def test_similarity_transform_recovers_an_exact_similarity(weights: np.ndarray | None) -> None:
    truth = _similarity(17.0, 0.37, -40.5, 12.25)
    src = np.array([[300.0, 200.0], [420.0, 190.0], [360.0, 260.0], [310.0, 330.0], [410.0, 335.0]])
    got = similarity_transform(src, _apply(truth, src), weights)
    np.testing.assert_allclose(got, truth, atol=1e-9)


def test_zero_weight_points_do_not_move_the_fit() -> None:
    src = np.array([[300.0, 200.0], [420.0, 190.0], [360.0, 260.0], [310.0, 330.0], [410.0, 335.0]])
    moved = src.copy()
    moved[3:] += [[-25.0, 40.0], [30.0, -15.0]]  # a wide-open mouth: mouth corners carry no weight
    np.testing.assert_allclose(chip_transform(src), chip_transform(moved), atol=1e-12)
    # ... and the nose does carry some
    nose = src.copy()
    nose[2] += [10.0, 0.0]
    assert not np.allclose(chip_transform(src), chip_transform(nose))


def test_template_maps_onto_itself() -> None:
    np.testing.assert_allclose(
        chip_transform(DLIB_CHIP_TEMPLATE), np.hstack([np.eye(2), np.zeros((2, 1))]), atol=1e-9
    )


def test_never_reflects() -> None:
    mirrored = DLIB_CHIP_TEMPLATE * [-1.0, 1.0]  # left and right swapped by a reflection
    matrix = similarity_transform(mirrored, DLIB_CHIP_TEMPLATE)
    assert np.linalg.det(matrix[:, :2]) > 0


@pytest.mark.parametrize("landmarks", [np.zeros((5, 2)), np.ones((4, 2)), np.full((5, 2), np.nan)])
def test_bad_landmarks_are_refused(landmarks: np.ndarray) -> None:
    with pytest.raises(InvalidParameter):
        chip_transform(landmarks)


def test_bad_weights_are_refused() -> None:
    with pytest.raises(InvalidParameter):
        similarity_transform(DLIB_CHIP_TEMPLATE, DLIB_CHIP_TEMPLATE, np.zeros(5))


def test_align_face_puts_the_landmarks_on_the_template() -> None:
    # Dots drawn where the landmarks are in the image must appear at the template points in the chip.
    truth = _similarity(-12.0, 0.45, -60.0, -30.0)  # image -> chip
    landmarks = _image_landmarks(truth)
    image = np.zeros((480, 640, 3), dtype=np.uint8)
    for x, y in landmarks[:3]:
        image[int(round(y)) - 6 : int(round(y)) + 7, int(round(x)) - 6 : int(round(x)) + 7] = (255, 128, 0)
    chip = align_face(image, landmarks)
    assert chip.shape == (CHIP_SIZE, CHIP_SIZE, 3) and chip.dtype == np.uint8
    for x, y in DLIB_CHIP_TEMPLATE[:3]:
        assert chip[int(round(y)), int(round(x)), 0] > 200
    assert chip[5, 5].sum() == 0  # background stays black


def test_align_face_fills_outside_the_image_with_zeros() -> None:
    image = np.full((100, 100, 3), 200, dtype=np.uint8)
    landmarks = _image_landmarks(_similarity(0.0, 1.0, 60.0, 60.0))  # face near the top-left corner
    chip = align_face(image, landmarks)
    assert chip[0, 0].sum() == 0 and chip[-1, -1].sum() == 3 * 200


def test_align_faces_batches() -> None:
    image = np.random.default_rng(0).integers(0, 255, (300, 300, 3), dtype=np.uint8)
    lm = np.stack(
        [_image_landmarks(_similarity(0, 0.6, 0, 0)), _image_landmarks(_similarity(5, 0.8, -10, 4))]
    )
    chips = align_faces(image, lm)
    assert chips.shape == (2, CHIP_SIZE, CHIP_SIZE, 3)
    np.testing.assert_array_equal(chips[1], align_face(image, lm[1]))
    assert align_faces(image, np.zeros((0, 5, 2))).shape == (0, CHIP_SIZE, CHIP_SIZE, 3)


def test_align_face_refuses_a_grey_image() -> None:
    with pytest.raises(InvalidParameter):
        align_face(np.zeros((50, 50), dtype=np.uint8), DLIB_CHIP_TEMPLATE)


def test_chip_geometry_matches_dlibs_own_chips_on_real_faces() -> None:
    """Golden: our transform from MTCNN's points vs dlib's image->chip transform from its own landmarks.

    Inputs (facenet-pytorch MTCNN landmarks) and dlib's transforms are stored by make_goldens.py. On whole
    faces the two chips agree to a few pixels at every corner (seen: 2.2-7.2) and in scale to 5 %.
    """
    faces = [f for f in json.loads(GOLDEN.read_text())["faces"] if not f["partial"]]
    assert len(faces) >= 10
    corners = np.array([[0, 0], [149, 0], [0, 149], [149, 149], [75, 75]], dtype=np.float64)
    for face in faces:
        dlib_m = np.asarray(face["dlib_image_to_chip"])
        ours = chip_transform(np.asarray(face["mtcnn_landmarks"]))
        in_image = _apply(np.linalg.inv(np.vstack([dlib_m, [0, 0, 1]]))[:2], corners)
        offset = np.abs(_apply(ours, in_image) - corners).max()
        scale = np.linalg.norm(ours[:, :2], 2) / np.linalg.norm(dlib_m[:, :2], 2)
        assert offset < 9.0, (face["photo"], face["mirrored"], offset)
        assert abs(scale - 1.0) < 0.06, (face["photo"], face["mirrored"], scale)
