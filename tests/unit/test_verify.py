"""app/pipelines/verify.py: normalisation, similarity/distance, best match, the threshold's derivation."""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pytest

from app.errors import InvalidParameter, NoFaceFound
from app.pipelines.verify import (
    CHIP_SIZE,
    DEFAULT_THRESHOLD,
    DLIB_L2_THRESHOLD,
    DLIB_MEDIAN_DESCRIPTOR_NORM,
    best_match,
    chips_to_batch,
    compare,
    embed,
    l2_normalise,
    similarity_to_distance,
)

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "dlib" / "faces.json"


def test_threshold_is_dlibs_operating_point_on_unit_vectors() -> None:
    assert DEFAULT_THRESHOLD == 0.916  # WEIGHTS.md's figure, derived again from L2 0.6 and norm 1.463
    # Two raw descriptors of the median length at exactly dlib's distance 0.6 ...
    m = DLIB_MEDIAN_DESCRIPTOR_NORM
    angle = 2 * math.asin(DLIB_L2_THRESHOLD / (2 * m))
    a = np.zeros(128)
    b = np.zeros(128)
    a[0] = m
    b[0], b[1] = m * math.cos(angle), m * math.sin(angle)
    assert np.linalg.norm(a - b) == pytest.approx(DLIB_L2_THRESHOLD)
    # ... have the threshold cosine, and a unit distance of 0.6 / m.
    similarity, distance = compare(a, b)
    assert similarity == pytest.approx(DEFAULT_THRESHOLD, abs=5e-4)
    assert distance == pytest.approx(DLIB_L2_THRESHOLD / m, abs=1e-6)


def test_threshold_reproduces_dlibs_decisions_on_dlibs_own_descriptors() -> None:
    """Golden: face_recognition's raw descriptors of the test photos, decided by L2 0.6 and by our cosine."""
    faces = json.loads(GOLDEN.read_text())["faces"]
    raw = np.array([f["dlib_descriptor"] for f in faces])
    unit = l2_normalise(raw)
    for i, j in itertools.combinations(range(len(faces)), 2):
        dlib_same = np.linalg.norm(raw[i] - raw[j]) <= DLIB_L2_THRESHOLD
        assert (float(unit[i] @ unit[j]) >= DEFAULT_THRESHOLD) == dlib_same, (i, j)


def test_l2_normalise() -> None:
    v = np.array([[3.0, 4.0], [0.0, 0.0], [-1e-3, 0.0]])
    out = l2_normalise(v)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [[0.6, 0.8], [0.0, 0.0], [-1.0, 0.0]], atol=1e-6)


@pytest.mark.parametrize(
    ("b", "similarity", "distance"),
    [
        ([2.0, 0.0], 1.0, 0.0),
        ([0.0, 5.0], 0.0, math.sqrt(2)),
        ([-1.0, 0.0], -1.0, 2.0),
        ([1.0, 1.0], math.sqrt(0.5), math.sqrt(2 - math.sqrt(2))),
    ],
)
def test_compare(b: list[float], similarity: float, distance: float) -> None:
    got = compare(np.array([1.0, 0.0]), np.array(b))
    assert got == pytest.approx((similarity, distance), abs=1e-6)


def test_similarity_to_distance_clamps() -> None:
    assert float(similarity_to_distance(1.0000001)) == 0.0


def test_best_match_over_all_pairs() -> None:
    rng = np.random.default_rng(1)
    a = l2_normalise(rng.normal(size=(3, 128)))
    b = l2_normalise(rng.normal(size=(4, 128)))
    b[2] = l2_normalise((a[1] + 0.01 * rng.normal(size=128))[None])[0]
    match = best_match(a, b)
    assert (match.index_a, match.index_b) == (1, 2)
    # Independent of the module's own helpers: every pair's cosine by hand, the winner's distance by formula.
    cosines = {(i, j): sum(float(x) * float(y) for x, y in zip(a[i], b[j], strict=True))
               for i in range(3) for j in range(4)}
    assert max(cosines, key=lambda pair: cosines[pair]) == (1, 2)
    assert match.similarity == pytest.approx(cosines[1, 2], abs=1e-6)
    assert match.distance == pytest.approx(math.sqrt(2 - 2 * cosines[1, 2]), abs=1e-6)
    assert match.same is True
    assert best_match(a, b, threshold=0.9999).same is False


def test_best_match_without_faces() -> None:
    with pytest.raises(NoFaceFound):
        best_match(np.zeros((0, 128)), np.ones((1, 128)))
    with pytest.raises(NoFaceFound):
        best_match(np.ones((1, 128)), np.zeros((0, 128)))


def test_best_match_refuses_a_threshold_outside_cosines() -> None:
    with pytest.raises(InvalidParameter):
        best_match(np.ones((1, 128)), np.ones((1, 128)), threshold=1.5)


class _SumRunner:
    """A stand-in model: descriptor = per-channel pixel sums, padded to 128 (checks layout and dtype)."""

    input_names = ["image"]
    output_names = ["descriptor"]

    def __init__(self) -> None:
        self.seen: list[np.ndarray] = []

    def run(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        x = feeds["image"]
        self.seen.append(x)
        out = np.zeros((len(x), 128), dtype=np.float32)
        out[:, :3] = x.sum(axis=(2, 3))
        return [out]


def test_embed_feeds_nchw_float_and_normalises() -> None:
    chips = np.zeros((2, CHIP_SIZE, CHIP_SIZE, 3), dtype=np.uint8)
    chips[0, ..., 0] = 10  # red only
    chips[1, ..., 2] = 30  # blue only
    runner = _SumRunner()
    out = embed(runner, chips)
    assert runner.seen[0].shape == (2, 3, CHIP_SIZE, CHIP_SIZE) and runner.seen[0].dtype == np.float32
    assert runner.seen[0][0, 0, 0, 0] == 10.0
    np.testing.assert_allclose(out[:, :3], [[1, 0, 0], [0, 0, 1]], atol=1e-6)
    assert embed(runner, chips[:0]).shape == (0, 128)


def test_chips_must_be_150_square_rgb() -> None:
    with pytest.raises(InvalidParameter):
        chips_to_batch(np.zeros((1, 112, 112, 3), dtype=np.uint8))
