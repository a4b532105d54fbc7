"""Face verification on dlib ResNet descriptors: embed chips, compare unit vectors, pick the best pair.

Pure numpy. The embedding model is models/dlib_face_resnet.onnx (export/convert_dlib.py): input
(N, 3, 150, 150) float32 RGB 0..255, output dlib's raw 128-D descriptor, which is L2-normalised here.

Threshold. dlib's published operating point is a Euclidean distance of 0.6 between *raw* descriptors
(dlib's dnn_face_recognition_ex.cpp; face_recognition's `tolerance=0.6`). Raw descriptors are not unit
length: their norm clusters tightly around a median m. For two descriptors of length m,
|a - b|^2 = 2 m^2 (1 - cos), so L2 0.6 corresponds to cos = 1 - (0.6 / m)^2 / 2 on unit vectors, and a
unit-vector distance of 0.6 / m. With m = 1.463 (shared/WEIGHTS.md, 30 faces) that is cos 0.9159 and
distance 0.410. On the 12 faces of our test photos m = 1.393 (-> cos 0.907; tests/golden/dlib/README.md);
we keep the larger sample's 0.916, the stricter of the two, and no whole-face pair there lies between.
We compare unit vectors (lengths then do not matter) at that cosine; pairs within about +-0.06 of dlib's
0.6 can decide either way under any change of alignment (WEIGHTS.md, last section); clear pairs agree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from app.errors import InvalidParameter, NoFaceFound
from app.pipelines import Runner
from app.pipelines.align import CHIP_SIZE

EMBEDDING_SIZE = 128
# dlib's operating point on raw descriptors (dnn_face_recognition_ex.cpp; face_recognition's tolerance);
# also the distance threshold of the loss_metric stored in the .dat itself (export/dlib_dat.py reads it).
DLIB_L2_THRESHOLD = 0.6
# Median L2 norm of dlib's raw descriptors: shared/WEIGHTS.md measured 1.463 on 30 faces (60 with mirrors).
DLIB_MEDIAN_DESCRIPTOR_NORM = 1.463
# cos = 1 - (0.6 / 1.463)^2 / 2 = 0.9159 -> 0.916 (see the module docstring).
DEFAULT_THRESHOLD = round(1.0 - (DLIB_L2_THRESHOLD / DLIB_MEDIAN_DESCRIPTOR_NORM) ** 2 / 2.0, 3)
# Smallest face the detector looks for when verifying. face_recognition's HOG detector (dlib's frontal
# face detector: an 80x80 window, run on the image upsampled once) finds faces down to about 40 px;
# searching smaller MTCNN faces costs time (most of P-Net's pyramid) for faces too small to verify.
VERIFY_MIN_FACE_SIZE = 40
_EPS = 1e-12


@dataclass(frozen=True)
class Match:
    """The most similar pair between two sets of faces."""

    index_a: int
    index_b: int
    similarity: float  # cosine of the unit descriptors, -1..1
    distance: float  # Euclidean distance of the unit descriptors, 0..2
    same: bool  # similarity >= threshold


def chips_to_batch(chips: np.ndarray) -> np.ndarray:
    """(N, 150, 150, 3) uint8 RGB chips -> (N, 3, 150, 150) float32 0..255, the model's input."""
    if chips.ndim != 4 or chips.shape[1:] != (CHIP_SIZE, CHIP_SIZE, 3):
        raise InvalidParameter(f"chips must be (N, {CHIP_SIZE}, {CHIP_SIZE}, 3), got {chips.shape}")
    return np.ascontiguousarray(chips.transpose(0, 3, 1, 2), dtype=np.float32)


def l2_normalise(vectors: np.ndarray) -> np.ndarray:
    """(N, D) -> (N, D) float32 rows of unit length."""
    v = np.asarray(vectors, dtype=np.float64)
    norms = np.linalg.norm(v, axis=-1, keepdims=True)
    return (v / np.maximum(norms, _EPS)).astype(np.float32)


def embed(runner: Runner, chips: np.ndarray) -> np.ndarray:
    """(N, 150, 150, 3) uint8 RGB chips -> (N, 128) float32 unit descriptors."""
    if len(chips) == 0:
        return np.zeros((0, EMBEDDING_SIZE), dtype=np.float32)
    raw = runner.run({runner.input_names[0]: chips_to_batch(chips)})[0]
    return l2_normalise(raw.reshape(len(chips), -1))


def similarity_to_distance(similarity: float | np.ndarray) -> float | np.ndarray:
    """Euclidean distance between unit vectors with the given cosine: sqrt(2 - 2 cos)."""
    return np.sqrt(np.maximum(2.0 - 2.0 * np.asarray(similarity, dtype=np.float64), 0.0))


def compare(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """(cosine similarity, unit-vector distance) of two descriptors (normalised here if they are not)."""
    ua, ub = l2_normalise(np.reshape(a, (1, -1))), l2_normalise(np.reshape(b, (1, -1)))
    similarity = float(np.clip(np.dot(ua[0].astype(np.float64), ub[0].astype(np.float64)), -1.0, 1.0))
    return similarity, float(similarity_to_distance(similarity))


def similarity_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, 128) x (M, 128) unit descriptors -> (N, M) float32 cosines."""
    return np.clip(a.astype(np.float64) @ b.astype(np.float64).T, -1.0, 1.0).astype(np.float32)


def best_match(a: np.ndarray, b: np.ndarray, threshold: float = DEFAULT_THRESHOLD) -> Match:
    """The most similar (face in a, face in b) pair over all pairs. Raises NoFaceFound if a set is empty."""
    if len(a) == 0 or len(b) == 0:
        raise NoFaceFound("no face found in " + ("the first image" if len(a) == 0 else "the second image"))
    if not -1.0 <= threshold <= 1.0 or math.isnan(threshold):
        raise InvalidParameter(f"threshold must be a cosine in [-1, 1], got {threshold}")
    sims = similarity_matrix(l2_normalise(a), l2_normalise(b))
    i, j = np.unravel_index(int(np.argmax(sims)), sims.shape)
    similarity = float(sims[i, j])
    distance = float(similarity_to_distance(similarity))
    return Match(int(i), int(j), similarity, distance, similarity >= threshold)
