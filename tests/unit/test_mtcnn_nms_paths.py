"""nms keeps the same boxes whether it builds the pairwise overlap matrix or compares one box at a time."""

from __future__ import annotations

import numpy as np
import pytest

from app.pipelines import mtcnn
from app.pipelines.mtcnn import NmsMode, nms


def _random_boxes(rng: np.random.Generator, count: int) -> tuple[np.ndarray, np.ndarray]:
    corners = rng.uniform(0, 200, (count, 2)).astype(np.float32)
    sizes = rng.uniform(0, 60, (count, 2)).astype(np.float32)
    sizes[: count // 10] = 0  # empty boxes: 0 / 0 overlaps (NaN) must be treated alike by both ways
    corners[1: count // 5: 2] = corners[0: count // 5 - 1: 2]  # duplicates
    scores = rng.choice(np.linspace(0.0, 1.0, 7), count).astype(np.float32)  # ties: the stable order counts
    return np.concatenate([corners, corners + sizes], axis=1), scores


@pytest.mark.parametrize(("mode", "threshold"), [("union", 0.5), ("union", 0.7), ("min", 0.7)])
def test_matrix_and_loop_keep_the_same_boxes(monkeypatch: pytest.MonkeyPatch, mode: NmsMode,
                                             threshold: float) -> None:
    rng = np.random.default_rng(7)
    for count in (1, 2, 3, 17, 300):
        boxes, scores = _random_boxes(rng, count)
        with np.errstate(invalid="ignore"):
            monkeypatch.setattr(mtcnn, "NMS_MATRIX_MAX_BOXES", count)
            by_matrix = nms(boxes, scores, threshold, mode)
            monkeypatch.setattr(mtcnn, "NMS_MATRIX_MAX_BOXES", 0)
            by_loop = nms(boxes, scores, threshold, mode)
        assert by_matrix.dtype == by_loop.dtype == np.int64
        assert by_matrix.tolist() == by_loop.tolist()
        assert 1 <= len(by_matrix) <= count
