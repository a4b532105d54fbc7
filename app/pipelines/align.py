"""Cut dlib-style 150x150 face chips from MTCNN's five landmarks (numpy + OpenCV only).

dlib's face-recognition ResNet expects the chip dlib's `get_face_chip(img, shape, 150, padding=0.25)` cuts
from its *own* five landmarks (eye corners and the base of the nose). MTCNN gives different points (eye
centres, nose tip, mouth corners), so we map MTCNN's points with one similarity transform onto a template
placed in dlib's chip geometry: where MTCNN's points fall, on average, inside dlib's own chips.

Landmarks everywhere here: (5, 2) float, x y in image pixels, in MTCNN's order (image-left eye,
image-right eye, nose, image-left mouth corner, image-right mouth corner).
"""

from __future__ import annotations

import cv2
import numpy as np

from app.errors import InvalidParameter

CHIP_SIZE = 150  # dlib_face_recognition_resnet_model_v1's input (dlib's get_face_chip size)
CHIP_PADDING = 0.25  # dlib's default get_face_chip padding, which the template below reproduces

# Where MTCNN's five points land in dlib's 150x150 chip (padding 0.25), chip pixels x y.
# Derived by mapping facenet-pytorch MTCNN landmarks through dlib's own image->chip transform on 30 faces
# (60 with mirror images) and fitting the template with the weights below (shared/WEIGHTS.md, "Finding:
# aligning MTCNN landmarks to dlib's chip"). Re-derived on the test photos available here by
# tests/golden/dlib/make_goldens.py; its leave-one-photo-out numbers are in tests/golden/dlib/README.md.
DLIB_CHIP_TEMPLATE = np.array(
    [
        [47.5392, 45.4050],  # image-left eye centre
        [101.8750, 45.1643],  # image-right eye centre
        [74.5419, 79.2551],  # nose tip
        [49.5915, 102.1659],  # image-left mouth corner
        [98.8487, 102.0046],  # image-right mouth corner
    ],
    dtype=np.float64,
)
# Least-squares weights per landmark (WEIGHTS.md finding): mouth corners move with expression and
# pull the chip away from dlib's geometry, so they get no weight; the nose helps a little.
LANDMARK_WEIGHTS = np.array([0.4375, 0.4375, 0.125, 0.0, 0.0], dtype=np.float64)
_MIN_SPREAD = 1e-6  # weighted variance (px^2) below which the landmarks carry no scale or rotation


def similarity_transform(src: np.ndarray, dst: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Weighted least-squares similarity (rotation, uniform scale, translation) taking src onto dst.

    Umeyama (1991), "Least-squares estimation of transformation parameters between two point patterns",
    with per-point weights. src, dst: (K, 2); weights: (K,) >= 0 or None for equal weights.
    Returns (2, 3) float64 M with dst ~= M @ [x, y, 1].
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    if src.ndim != 2 or src.shape[1] != 2 or src.shape != dst.shape:
        raise InvalidParameter(f"point sets must both be (K, 2), got {src.shape} and {dst.shape}")
    w = np.ones(len(src)) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != (len(src),) or np.any(w < 0) or w.sum() <= 0:
        raise InvalidParameter("weights must be (K,), non-negative, not all zero")
    w = w / w.sum()
    mean_src, mean_dst = w @ src, w @ dst
    src_c, dst_c = src - mean_src, dst - mean_dst
    variance = float(w @ np.sum(src_c**2, axis=1))
    if variance < _MIN_SPREAD:
        raise InvalidParameter("landmarks are degenerate (all weighted points coincide)")
    covariance = (dst_c * w[:, None]).T @ src_c
    u, d, vt = np.linalg.svd(covariance)
    sign = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[-1] = -1.0  # a reflection would fit better; keep a proper rotation
    rotation = (u * sign) @ vt
    scale = float(np.sum(d * sign)) / variance
    translation = mean_dst - scale * rotation @ mean_src
    return np.hstack([scale * rotation, translation[:, None]])


def _check_landmarks(landmarks: np.ndarray) -> np.ndarray:
    points = np.asarray(landmarks, dtype=np.float64)
    if points.shape != (5, 2) or not np.all(np.isfinite(points)):
        raise InvalidParameter(f"landmarks must be (5, 2) finite x y, got shape {points.shape}")
    return points


def chip_transform(landmarks: np.ndarray) -> np.ndarray:
    """(5, 2) MTCNN landmarks -> (2, 3) float64 similarity mapping image pixels to chip pixels."""
    return similarity_transform(_check_landmarks(landmarks), DLIB_CHIP_TEMPLATE, LANDMARK_WEIGHTS)


def align_face(image_rgb: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 RGB image + (5, 2) MTCNN landmarks -> (150, 150, 3) uint8 RGB chip.

    Bilinear resampling, zeros outside the image (as dlib's chip extraction).
    """
    if image_rgb.ndim != 3 or image_rgb.shape[2] != 3 or image_rgb.dtype != np.uint8:
        raise InvalidParameter(f"image must be (H, W, 3) uint8, got {image_rgb.shape} {image_rgb.dtype}")
    matrix = chip_transform(landmarks)
    return cv2.warpAffine(
        image_rgb,
        matrix,
        (CHIP_SIZE, CHIP_SIZE),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=(0, 0, 0),
    )


def align_faces(image_rgb: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 image + (N, 5, 2) landmarks -> (N, 150, 150, 3) uint8 chips."""
    points = np.asarray(landmarks, dtype=np.float64).reshape(-1, 5, 2)
    chips = np.zeros((len(points), CHIP_SIZE, CHIP_SIZE, 3), dtype=np.uint8)
    for index, face in enumerate(points):
        chips[index] = align_face(image_rgb, face)
    return chips
