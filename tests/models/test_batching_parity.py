"""Batched runs of the real nets give what unbatched runs give, net by net and end to end.

onnxruntime's convolutions loop over the batch axis and its matrix products compute each row on its own, so a
row's outputs are the same numbers whichever rows share its run: the comparisons are exact.
"""

from __future__ import annotations

import contextvars
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from app import metrics
from app.batching import BatchingRunner, BatchPolicy, batchable
from app.deadline import CURRENT_DEADLINE, Deadline
from app.imaging import decode_image
from app.pipelines.mtcnn import DetectionParams, MtcnnDetector
from app.pipelines.recognition import FaceRecognizer
from app.runtime import ModelSession, load_model, read_manifest
from tests.conftest import MODELS_DIR, photo_bytes

LONG = 60.0
ROWS = (1, 2, 3)  # three concurrent calls of different sizes, stacked into one run of 6
FEATURE_SHAPES = {"dlib-face-resnet": (3, 150, 150), "dlib-face-resnet-int8": (3, 150, 150),
                  "mtcnn-rnet": (3, 24, 24), "mtcnn-onet": (3, 48, 48),
                  "style-multi26": (3, 64, 96)}


def load(model_id: str, threads: int = 1) -> ModelSession:
    entry = next(e for e in read_manifest(MODELS_DIR) if e["id"] == model_id)
    return load_model(entry, Path(MODELS_DIR), ["CPUExecutionProvider"], threads, verify_sha256=False)


def feeds_for(model: ModelSession, rows: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    feeds = {model.input_names[0]: rng.uniform(-1, 1, (rows, *FEATURE_SHAPES[model.id])).astype(np.float32)}
    if model.id == "style-multi26":  # a different style mix per row
        weights = rng.uniform(0, 1, (rows, 26)).astype(np.float32)
        feeds[model.input_names[1]] = weights / weights.sum(axis=1, keepdims=True)
    return feeds


def in_job(function, *args):  # type: ignore[no-untyped-def]
    """Run as a gated job would: with a deadline of its own, in a context of its own."""
    context = contextvars.copy_context()
    context.run(CURRENT_DEADLINE.set, Deadline.after(LONG))
    return context.run(function, *args)


def test_every_batched_net_is_one_the_manifest_marks_batchable() -> None:
    assert {e["id"] for e in read_manifest(MODELS_DIR) if batchable(e)} >= set(FEATURE_SHAPES)
    assert not batchable(next(e for e in read_manifest(MODELS_DIR) if e["id"] == "mtcnn-pnet"))


@pytest.mark.parametrize("model_id", sorted(FEATURE_SHAPES))
def test_batched_run_equals_each_call_alone(model_id: str) -> None:
    model = load(model_id)
    runner = BatchingRunner(model, BatchPolicy(max_size=sum(ROWS), timeout_s=LONG), company=lambda: len(ROWS))
    calls = [feeds_for(model, rows, seed) for seed, rows in enumerate(ROWS)]
    runs_before = metrics.REGISTRY.get_sample_value("atelier_batch_size_count", {"model": model_id}) or 0.0
    with ThreadPoolExecutor(len(calls)) as pool:
        batched = [f.result(LONG) for f in [pool.submit(in_job, runner.run, feeds) for feeds in calls]]
    runs = (metrics.REGISTRY.get_sample_value("atelier_batch_size_count", {"model": model_id}) or 0.0) - runs_before
    assert runs == 1  # all three calls were in one run
    for feeds, outputs in zip(calls, batched, strict=True):
        for alone, together in zip(model.run(feeds), outputs, strict=True):
            np.testing.assert_array_equal(together, alone)


def test_concurrent_recognition_with_batching_equals_recognition_without() -> None:
    """Detection (R-Net, O-Net crops) and embeddings of four photos at once, batched, as one at a time."""
    sessions = {model_id: load(model_id) for model_id in ("mtcnn-pnet", "mtcnn-rnet", "mtcnn-onet",
                                                          "dlib-face-resnet")}
    photos = [decode_image(photo_bytes(name), max_pixels=40_000_000).rgb
              for name in ("obama.jpg", "biden.jpg", "obama2.jpg", "astronaut")]
    params = DetectionParams()

    def recognizer(batched: bool) -> FaceRecognizer:
        if not batched:
            return FaceRecognizer(MtcnnDetector(sessions["mtcnn-pnet"], sessions["mtcnn-rnet"],
                                                sessions["mtcnn-onet"]), sessions["dlib-face-resnet"], "dlib")
        crops = BatchPolicy(max_size=64, timeout_s=0.05)  # whatever batches the timing makes
        # Every job embeds once, so with a timeout no machine reaches the four meet in one run.
        chips = BatchPolicy(max_size=64, timeout_s=LONG)
        detector = MtcnnDetector(sessions["mtcnn-pnet"], BatchingRunner(sessions["mtcnn-rnet"], crops),
                                 BatchingRunner(sessions["mtcnn-onet"], crops))
        return FaceRecognizer(detector, BatchingRunner(sessions["dlib-face-resnet"], chips,
                                                       company=lambda: len(photos)), "dlib")

    alone = [recognizer(False).embed_faces(photo, params) for photo in photos]
    calls_before = metrics.REGISTRY.get_sample_value("atelier_batch_size_sum", {"model": "dlib-face-resnet"}) or 0
    runs_before = metrics.REGISTRY.get_sample_value("atelier_batch_size_count", {"model": "dlib-face-resnet"}) or 0
    batched_recognizer = recognizer(True)
    with ThreadPoolExecutor(len(photos)) as pool:
        together = [f.result(LONG) for f in [pool.submit(in_job, batched_recognizer.embed_faces, photo, params)
                                              for photo in photos]]
    for one, other in zip(alone, together, strict=True):
        assert len(one.faces) == len(other.faces) >= 1
        for a, b in zip(one.faces, other.faces, strict=True):
            np.testing.assert_array_equal(a.box, b.box)
            np.testing.assert_array_equal(a.landmarks, b.landmarks)
            assert a.score == b.score
        np.testing.assert_array_equal(one.embeddings, other.embeddings)
    calls = (metrics.REGISTRY.get_sample_value("atelier_batch_size_sum", {"model": "dlib-face-resnet"}) or 0
             ) - calls_before
    runs = (metrics.REGISTRY.get_sample_value("atelier_batch_size_count", {"model": "dlib-face-resnet"}) or 0
            ) - runs_before
    assert calls == len(photos) and runs == 1  # all four jobs' chips in one run
