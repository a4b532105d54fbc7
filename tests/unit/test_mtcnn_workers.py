"""The detector's worker threads: every level and crop runs once, in a copy of the caller's context (which
carries the request's deadline), and the results equal a single-threaded run's. The same on the real
models is in tests/models/test_mtcnn_parity.py."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from app.deadline import CURRENT_DEADLINE, Deadline
from app.pipelines.mtcnn import (
    AreaResampler,
    MtcnnDetector,
    _Workers,
    crop_regions,
    normalise,
    pyramid_scales,
    scaled_size,
)


class RecordingPNet:
    """A P-Net stand-in with one confident cell per level; records each call's shape, thread and context."""

    input_names = ["image"]
    output_names = ["box_offsets", "face_prob"]

    def __init__(self, concurrent_first_calls: int = 0) -> None:
        self.calls: list[tuple[tuple[int, ...], object]] = []
        self.lock = threading.Lock()
        # The first calls wait until this many of them are running at once (a timeout fails the test).
        self.barrier = threading.Barrier(concurrent_first_calls, timeout=10) if concurrent_first_calls else None

    def run(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        image = feeds["image"]
        with self.lock:
            self.calls.append((image.shape, CURRENT_DEADLINE.get()))
            index = len(self.calls) - 1
        if self.barrier is not None and index < self.barrier.parties:
            self.barrier.wait()
        h, w = (image.shape[2] - 1) // 2 - 4, (image.shape[3] - 1) // 2 - 4
        prob = np.zeros((1, h, w), np.float32)
        prob[0, h // 2, w // 2] = 0.9  # one candidate per level, in the image's middle
        return [np.zeros((1, 4, h, w), np.float32), prob]


class CropNet:
    """An R-/O-Net stand-in scoring each crop by its mean pixel; records the batch sizes it was given."""

    input_names = ["image"]

    def __init__(self, landmarks: bool) -> None:
        self.output_names = ["box_offsets", "landmarks", "face_prob"] if landmarks else ["box_offsets", "face_prob"]
        self.batches: list[int] = []

    def run(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        crops = feeds["image"]
        self.batches.append(len(crops))
        score = 0.8 + 0.1 * np.tanh(crops.mean(axis=(1, 2, 3)))
        outputs = {"box_offsets": np.zeros((len(crops), 4), np.float32),
                   "landmarks": np.full((len(crops), 10), 0.5, np.float32), "face_prob": score.astype(np.float32)}
        return [outputs[name] for name in self.output_names]


def _image() -> np.ndarray:
    return np.random.default_rng(4).integers(0, 256, (300, 400, 3), dtype=np.uint8)


def test_workers_must_be_positive() -> None:
    with pytest.raises(ValueError, match="workers"):
        MtcnnDetector(RecordingPNet(), CropNet(False), CropNet(True), workers=0)


def test_each_level_runs_once_in_the_callers_context_and_results_match_one_thread() -> None:
    image = _image()
    single = MtcnnDetector(RecordingPNet(), CropNet(False), CropNet(True), workers=1).run(image)
    pnet = RecordingPNet(concurrent_first_calls=3)  # three levels must run at the same time
    detector = MtcnnDetector(pnet, CropNet(False), CropNet(True), workers=3)
    marker = Deadline.after(60)  # stands in for the request's deadline
    token = CURRENT_DEADLINE.set(marker)
    try:
        parallel = detector.run(image)
    finally:
        CURRENT_DEADLINE.reset(token)
    levels = [(1, 3, *scaled_size(300, 400, s)) for s in pyramid_scales(300, 400, 20, 0.709)]
    assert Counter(shape for shape, _ in pnet.calls) == Counter(levels)
    assert all(context is marker for _, context in pnet.calls)
    assert len(parallel.faces) == len(single.faces) > 0
    for ours, theirs in zip(parallel.faces, single.faces, strict=True):
        np.testing.assert_array_equal(ours.box, theirs.box)
        np.testing.assert_array_equal(ours.landmarks, theirs.landmarks)
        assert ours.score == theirs.score
    assert parallel.candidates == single.candidates


def test_crops_are_split_into_chunks_of_at_least_the_minimum() -> None:
    rnet = CropNet(False)
    detector = MtcnnDetector(RecordingPNet(), rnet, CropNet(True), workers=2)
    boxes = np.array([[x, 10.0, x + 30.0, 40.0] for x in range(0, 300, 3)], np.float32)  # 100 boxes
    resampler = AreaResampler(_image())
    with _Workers(2) as workers:
        outputs, kept = detector._run_on_crops(workers, rnet, resampler, boxes, 24, 32)
        assert rnet.batches == [50, 50] and len(kept) == 100
        one_batch = rnet.run({"image": normalise(resampler.crops(crop_regions(boxes, 300, 400)[0], 24))})
        np.testing.assert_array_equal(outputs["face_prob"], one_batch[1])  # in box order
        rnet.batches.clear()
        detector._run_on_crops(workers, rnet, resampler, boxes[:40], 24, 32)
        assert rnet.batches == [40]  # two chunks of 20 would be under the minimum of 32



class CountingNet(CropNet):
    """A crop net that counts how many of its runs, across every detection, are in progress at once."""

    def __init__(self, landmarks: bool, tally: dict[str, int], lock: threading.Lock) -> None:
        super().__init__(landmarks)
        self.tally, self.lock = tally, lock

    def run(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        with self.lock:
            self.tally["now"] += 1
            self.tally["most"] = max(self.tally["most"], self.tally["now"])
        try:
            time.sleep(0.01)  # long enough for runs of different detections to overlap
            return super().run(feeds)
        finally:
            with self.lock:
                self.tally["now"] -= 1


def test_concurrent_detections_share_the_detectors_threads() -> None:
    """Four requests detecting at once on a 2-worker detector keep at most 2 nets running, not 4 x 2."""
    tally, lock = {"now": 0, "most": 0}, threading.Lock()
    rnet, onet = CountingNet(False, tally, lock), CountingNet(True, tally, lock)
    detector = MtcnnDetector(RecordingPNet(), rnet, onet, workers=2)
    images = [_image() for _ in range(4)]
    with ThreadPoolExecutor(max_workers=4) as requests:
        results = list(requests.map(detector.run, images))
    detector.close()
    assert all(len(result.faces) == len(results[0].faces) > 0 for result in results)
    assert len(rnet.batches) >= 4 and 1 <= tally["most"] <= 2
