"""MTCNN's work is bounded whatever the options, and a request past its deadline stops inside the numpy stages.

P-Net's threshold may be 0, where every map cell becomes a candidate; the caps in app/pipelines/mtcnn.py keep
the best-scoring ones, and the NMS loop checks the job's deadline. At the default thresholds the caps never
bind (bench/pnet_candidates.py measures the margin), so parity with facenet-pytorch is untouched there: the
golden cases in test_mtcnn_parity.py run with the caps in force.
"""

from __future__ import annotations

import asyncio

import cv2
import numpy as np
import pytest

from app.deadline import CURRENT_DEADLINE, Deadline
from app.errors import DeadlineExceeded
from app.gate import InferenceGate
from app.pipelines import mtcnn
from app.pipelines.mtcnn import DetectionParams, best_scoring, generate_boxes, nms
from tests.golden.make_mtcnn_goldens import case_image
from tests.models.test_mtcnn_parity import detector

EVERY_CELL = DetectionParams(min_face_size=12, thresholds=(0.0, 0.7, 0.7))


@pytest.fixture(scope="module")
def photo_720x540() -> np.ndarray:
    return np.ascontiguousarray(cv2.resize(case_image("obama"), (720, 540), interpolation=cv2.INTER_AREA))


def test_best_scoring_keeps_the_top_in_original_order_with_ties_to_the_earlier() -> None:
    scores = np.array([0.1, 0.9, 0.5, 0.9, 0.2, 0.5], np.float32)
    assert best_scoring(scores, 3).tolist() == [1, 2, 3]  # 0.9, 0.9 and the earlier 0.5
    assert best_scoring(scores, 10).tolist() == list(range(6))


def test_generate_boxes_cap_keeps_the_best_cells() -> None:
    prob = np.random.default_rng(3).uniform(0, 1, (50, 60)).astype(np.float32)
    offsets = np.zeros((4, 50, 60), np.float32)
    every = generate_boxes(offsets, prob, 0.5, 0.0)
    capped = generate_boxes(offsets, prob, 0.5, 0.0, max_boxes=100)
    assert len(every) == 3000 and len(capped) == 100
    assert capped[:, 4].min() >= np.sort(every[:, 4])[-100]
    kept = {tuple(row) for row in capped.tolist()}
    assert kept <= {tuple(row) for row in every.tolist()}  # the same rows, just fewer


def test_every_cell_a_candidate_is_capped(photo_720x540: np.ndarray) -> None:
    result = detector(2).run(photo_720x540, EVERY_CELL)
    assert 0 < result.candidates["pnet"] <= mtcnn.PNET_MAX_PROPOSALS
    assert result.faces  # still finds the face


def test_the_nms_loop_stops_at_a_cancelled_deadline() -> None:
    rng = np.random.default_rng(0)
    count = mtcnn.NMS_MATRIX_MAX_BOXES + 500  # the one-box-at-a-time way
    corners = rng.uniform(0, 5000, (count, 2)).astype(np.float32)
    boxes = np.concatenate([corners, corners + 10], axis=1)
    scores = rng.uniform(0, 1, count).astype(np.float32)
    expired = Deadline.after(60)
    expired.cancel()
    token = CURRENT_DEADLINE.set(expired)
    try:
        with pytest.raises(DeadlineExceeded):
            nms(boxes, scores, 0.5)
    finally:
        CURRENT_DEADLINE.reset(token)
    assert len(nms(boxes, scores, 0.5)) > 0  # outside a job, nothing is checked


def test_a_detection_past_its_deadline_stops_itself(photo_720x540: np.ndarray) -> None:
    """With every cell a candidate the detection takes seconds here; under a 0.3 s deadline the job must end by
    raising DeadlineExceeded from one of its own checks (not by running to its end), and free its slot."""
    outcome: list[str] = []

    def job() -> object:
        try:
            return detector(2).run(photo_720x540, DetectionParams(min_face_size=12, thresholds=(0.0, 0.0, 0.0)))
        except DeadlineExceeded:
            outcome.append("stopped at a deadline check")
            raise
        finally:
            if not outcome:
                outcome.append("ran to its end")

    async def scenario() -> None:
        gate = InferenceGate(concurrency=1, queue=0, timeout_s=0.3, retry_after_s=1)
        with pytest.raises(DeadlineExceeded):
            await gate.run(job)
        while gate.running:
            await asyncio.sleep(0.01)
        gate.shutdown()

    asyncio.run(scenario())
    assert outcome == ["stopped at a deadline check"]
