"""MTCNN face detection (Zhang et al. 2016) in numpy and OpenCV; no torch.

Stages, each with bounding-box regression and non-maximum suppression (NMS):
  1. P-Net over an image pyramid -> candidate boxes (NMS per scale, then across scales).
  2. R-Net on 24x24 crops of the squared candidates, all in one batch.
  3. O-Net on 48x48 crops, one batch -> final boxes, scores and five landmarks; NMS in 'min' mode.

The numerics follow facenet-pytorch 2.6.0's `detect_face` (the parity reference, see tests/golden/mtcnn/):
its pyramid sizes, its 'area' resampling (= adaptive average pooling, reproduced here exactly with integral
images), its (x - 127.5) * 0.0078125 normalisation, its order of NMS steps, its calibration formulas (P-Net
offsets scale by x2 - x1, R-/O-Net offsets by x2 - x1 + 1), its squaring and its clipping of crops to the
image. All arrays are float32 like the reference unless a docstring says otherwise.
"""

from __future__ import annotations

import contextvars
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Literal

import cv2
import numpy as np

from app.deadline import check_deadline
from app.errors import InvalidImage, InvalidParameter
from app.pipelines import Runner

log = logging.getLogger(__name__)

# --- Constants, with their sources -------------------------------------------------------------------------
PNET_CELL_SIZE = 12  # P-Net's receptive field and smallest detectable face at scale 1 (MTCNN paper, Fig. 2)
PNET_STRIDE = 2  # P-Net's effective stride: one 2x2 max-pool (MTCNN paper, Fig. 2)
RNET_INPUT_SIZE = 24  # R-Net input crop (MTCNN paper, Fig. 2)
ONET_INPUT_SIZE = 48  # O-Net input crop (MTCNN paper, Fig. 2)
PIXEL_MEAN = 127.5  # input normalisation of the Caffe models, as in facenet-pytorch detect_face
PIXEL_SCALE = 0.0078125  # = 1/128, same source
PNET_SCALE_NMS_IOU = 0.5  # NMS within one pyramid level (facenet-pytorch detect_face; the authors' code)
PNET_CROSS_SCALE_NMS_IOU = 0.7  # NMS over all levels' survivors (same source)
RNET_NMS_IOU = 0.7  # after R-Net (same source)
ONET_NMS_MIN_OVERLAP = 0.7  # after O-Net, overlap / smaller area ('Min' mode, same source)
RNET_MIN_CROPS_PER_CHUNK = 32  # crops are split across workers only in chunks at least this big: below, a
ONET_MIN_CROPS_PER_CHUNK = 4  # second thread gains less than the hand-over costs. Measured with one-thread
# sessions on the 2-core machine: R-Net 64 crops 5.7 -> 3.3 ms in two chunks, 32 crops 2.8 -> 3.0 ms;
# O-Net 8 crops 4.2 -> 2.7 ms, 4 crops 2.2 -> 2.6 ms
# Bounds on the work any input can cause. P-Net's threshold may be as low as 0, where every map cell is a
# candidate (835k at the largest level of a 2333x1434 photo at min_face_size 12), and NMS grows with the
# square of its boxes. The reference keeps every cell; we keep the best-scoring ones. At the default
# thresholds the most cells seen above threshold at one level were 871 (a 720x540 noise image at
# min_face_size 12) and the most boxes surviving the per-level NMS, summed over levels, 3850 (obama3.jpg,
# 2333x1434, min_face_size 12, scale_factor 0.95), measured with bench/pnet_candidates.py: both caps sit well
# above, so results at the default thresholds equal the uncapped reference's.
PNET_MAX_CELLS_PER_LEVEL = 4096  # best-scoring candidates kept per pyramid level, before that level's NMS
PNET_MAX_PROPOSALS = 8192  # best-scoring candidates kept over all levels, before the cross-scale NMS
MAX_CROPS_PER_CHUNK = 1024  # R-/O-Net crops cut and run at once: bounds the gather's index arrays (~14 MiB
# each at 24x24, ~57 MiB at 48x48) without changing any output
NMS_MATRIX_MAX_BOXES = 1024  # up to this many boxes nms computes all pairwise overlaps at once (4 MiB a
# matrix); a speed/memory trade-off measured in bench/, with no effect on which boxes are kept
MIN_FACE_SIZE_FLOOR = PNET_CELL_SIZE  # a smaller min_face_size would upsample beyond P-Net's 12-pixel cell
SCALE_FACTOR_RANGE = (0.1, 0.95)  # accepted pyramid step; 0.709 ~ 1/sqrt(2) halves the area per level
LANDMARK_NAMES = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")  # O-Net's order; 'left' is
# the image's left (the subject's right eye), as in the authors' training annotations

NmsMode = Literal["union", "min"]
PnetPacking = Literal["per_level", "packed"]


@dataclass(frozen=True)
class DetectionParams:
    """Detector parameters; the defaults are MTCNN's published ones (as in facenet-pytorch's MTCNN)."""

    min_face_size: int = 20
    thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7)  # P-Net, R-Net, O-Net face probability
    scale_factor: float = 0.709
    max_faces: int | None = None  # keep only the largest faces (by box area)

    def __post_init__(self) -> None:
        if isinstance(self.min_face_size, bool) or not isinstance(self.min_face_size, int | np.integer):
            raise InvalidParameter(f"min_face_size must be an integer, got {self.min_face_size!r}")
        if self.min_face_size < MIN_FACE_SIZE_FLOOR:
            raise InvalidParameter(
                f"min_face_size must be at least {MIN_FACE_SIZE_FLOOR}, got {self.min_face_size}")
        if not isinstance(self.thresholds, Sequence) or len(self.thresholds) != 3:
            raise InvalidParameter(
                f"thresholds must be three numbers (P-Net, R-Net, O-Net), got {self.thresholds!r}")
        for value in self.thresholds:
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
                raise InvalidParameter(f"each threshold must be a number in [0, 1], got {value!r}")
        low, high = SCALE_FACTOR_RANGE
        if not isinstance(self.scale_factor, int | float) or not low <= float(self.scale_factor) <= high:
            raise InvalidParameter(f"scale_factor must be in [{low}, {high}], got {self.scale_factor!r}")
        if self.max_faces is not None and (
            isinstance(self.max_faces, bool) or not isinstance(self.max_faces, int) or self.max_faces < 1
        ):
            raise InvalidParameter(f"max_faces must be a positive integer, got {self.max_faces!r}")
        # Plain Python values from here on (a list or numpy scalars may come in).
        object.__setattr__(self, "min_face_size", int(self.min_face_size))
        object.__setattr__(self, "thresholds", tuple(float(v) for v in self.thresholds))
        object.__setattr__(self, "scale_factor", float(self.scale_factor))


# Peak memory of one detection per input pixel (bench/memory_factors.py, this machine, onnxruntime's arena
# included): min_face_size 12 -> 326 B/px at 1080p (220 at 4K), 20 -> 124, 40 -> 32. P-Net's first level is
# the image scaled by 12 / min_face_size, so the cost is a fixed part plus one that scales with that area.
# Rounded up, so the estimate bounds what was measured; decoding is extra (app.imaging.DECODE_BYTES_PER_PIXEL).
DETECTION_FIXED_BYTES_PER_PIXEL = 40
DETECTION_LEVEL0_BYTES_PER_PIXEL = 320


def detection_peak_bytes(height: int, width: int, params: DetectionParams) -> int:
    """Estimated peak memory of MtcnnDetector.run on a height x width image with `params`."""
    level0 = (PNET_CELL_SIZE / params.min_face_size) ** 2
    return int(height * width * (DETECTION_FIXED_BYTES_PER_PIXEL + DETECTION_LEVEL0_BYTES_PER_PIXEL * level0))


@dataclass(frozen=True)
class Face:
    """One detection in image pixel coordinates (the reference's continuous coordinates, not clipped)."""

    box: np.ndarray  # (4,) float32: x1, y1, x2, y2
    score: float  # O-Net face probability
    landmarks: np.ndarray  # (5, 2) float32: x, y in LANDMARK_NAMES order

    @property
    def area(self) -> float:
        return float(max(self.box[2] - self.box[0], 0.0) * max(self.box[3] - self.box[1], 0.0))

    def as_dict(self) -> dict[str, Any]:
        return {
            "box": [float(v) for v in self.box],
            "score": float(self.score),
            "landmarks": {name: [float(p[0]), float(p[1])] for name, p in zip(LANDMARK_NAMES, self.landmarks,
                                                                              strict=True)},
        }


@dataclass
class DetectionResult:
    faces: list[Face]  # sorted by score, highest first
    timings_ms: dict[str, float] = field(default_factory=dict)  # per stage
    candidates: dict[str, int] = field(default_factory=dict)  # boxes alive after each stage


# --- Pyramid and resampling ---------------------------------------------------------------------------------
def pyramid_scales(height: int, width: int, min_face_size: int, scale_factor: float) -> list[float]:
    """Scales at which P-Net's 12-pixel cell matches faces from min_face_size up to the image's shorter side.

    The first scale maps min_face_size to 12 pixels; each next one multiplies by scale_factor while the
    scaled shorter side is still at least 12 pixels. Python floats, as in the reference.
    """
    first = PNET_CELL_SIZE / min_face_size
    shorter = min(height, width) * first
    scales: list[float] = []
    scale = first
    while shorter >= PNET_CELL_SIZE:
        scales.append(scale)
        scale *= scale_factor
        shorter *= scale_factor
    return scales


def scaled_size(height: int, width: int, scale: float) -> tuple[int, int]:
    """Size of one pyramid level: int(h * scale + 1), as the reference (not a rounding)."""
    return int(height * scale + 1), int(width * scale + 1)


def pooling_bins(length: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Bins of adaptive average pooling from `length` to `size`: starts (size,) and ends (size,) int64.

    Bin i covers [floor(i * length / size), ceil((i + 1) * length / size)), as torch's adaptive_avg_pool2d
    (which torch's interpolate(mode='area') is). Bins overlap or repeat when upsampling.
    """
    index = np.arange(size, dtype=np.int64)
    return (index * length) // size, ((index + 1) * length + size - 1) // size


class AreaResampler:
    """Exact 'area' (adaptive average pooling) resampling of one image, by its integral images.

    Each channel of image (H, W, 3) uint8 is summed once by OpenCV into an integral image; they are kept as
    planes (3, H + 1, W + 1), exact in int32 (float64 beyond 8.4 Mpx), so that levels and crops come out
    channel-first without a transposition. Pyramid levels and crops are then differences of their entries,
    so each output pixel is the bin's exact integer sum divided by the bin's height and then its width in
    float32, like the reference's adaptive_avg_pool2d. Read-only once built: threads may share it.
    """

    def __init__(self, image: np.ndarray) -> None:
        self.height, self.width = image.shape[:2]
        # int32 holds every sum while H * W * 255 < 2**31; float64 is exact far beyond any accepted image.
        exact_in_int32 = self.height * self.width * 255 < 2**31
        self.integral = np.empty((3, self.height + 1, self.width + 1), np.int32 if exact_in_int32 else np.float64)
        for plane, integral in zip(cv2.split(np.ascontiguousarray(image)), self.integral, strict=True):
            cv2.integral(plane, sum=integral, sdepth=cv2.CV_32S if exact_in_int32 else cv2.CV_64F)  # in place

    def level(self, out_height: int, out_width: int) -> np.ndarray:
        """The whole image resampled to (3, out_height, out_width) float32 pixel values (CHW)."""
        row_start, row_end = pooling_bins(self.height, out_height)
        col_start, col_end = pooling_bins(self.width, out_width)
        heights = (row_end - row_start).astype(np.float32)[:, None]
        widths = (col_end - col_start).astype(np.float32)[None, :]
        pixels = np.empty((3, out_height, out_width), dtype=np.float32)
        for plane, out in zip(self.integral, pixels, strict=True):
            rows = plane[row_end]
            rows -= plane[row_start]  # (h, W + 1): bin sums over rows, cumulative over columns
            sums = np.take(rows, col_end, axis=1)
            sums -= np.take(rows, col_start, axis=1)  # (h, w) exact bin sums
            np.divide(sums, heights, out=out, casting="unsafe", dtype=np.float32)  # exact sums to float32, / height
            out /= widths
        return pixels

    def crops(self, regions: np.ndarray, size: int) -> np.ndarray:
        """Crops resampled to (N, 3, size, size) float32 pixel values.

        regions: (N, 4) int64 row_start, row_end, col_start, col_end (half-open, inside the image, non-empty).
        """
        index = np.arange(size, dtype=np.int64)[None, :]
        heights = (regions[:, 1] - regions[:, 0])[:, None]
        widths = (regions[:, 3] - regions[:, 2])[:, None]
        r0 = regions[:, 0:1] + (index * heights) // size  # (N, size)
        r1 = regions[:, 0:1] + ((index + 1) * heights + size - 1) // size
        c0 = regions[:, 2:3] + (index * widths) // size
        c1 = regions[:, 2:3] + ((index + 1) * widths + size - 1) // size
        # One flat index per (crop, channel, row, column) corner, built in CHW order so that the gathers need
        # no transpose afterwards; np.take on a 1-d array is numpy's fastest gather.
        flat = self.integral.reshape(-1)
        stride = self.width + 1
        channel = np.arange(3, dtype=np.int64)[None, :, None, None] * ((self.height + 1) * stride)
        r0s, r1s = (r0 * stride)[:, None, :, None] + channel, (r1 * stride)[:, None, :, None] + channel
        c0s, c1s = c0[:, None, None, :], c1[:, None, None, :]  # (N, 1, 1, size)
        sums = np.take(flat, r1s + c1s)
        sums -= np.take(flat, r0s + c1s)
        sums -= np.take(flat, r1s + c0s)
        sums += np.take(flat, r0s + c0s)  # (N, 3, size, size) exact bin sums
        pixels = np.empty(sums.shape, dtype=np.float32)
        np.divide(sums, (r1 - r0).astype(np.float32)[:, None, :, None], out=pixels, casting="unsafe",
                  dtype=np.float32)  # converts the exact sums to float32, then divides, in one pass
        pixels /= (c1 - c0).astype(np.float32)[:, None, None, :]
        return pixels


def normalise(pixels: np.ndarray) -> np.ndarray:
    """(x - 127.5) * 0.0078125 in place on float32 pixel values; returns the same array."""
    pixels -= np.float32(PIXEL_MEAN)
    pixels *= np.float32(PIXEL_SCALE)
    return pixels


# --- P-Net on one packed canvas -------------------------------------------------------------------------------
# An output cell (r, c) of P-Net sees exactly input rows [2r, 2r + 12) and columns [2c, 2c + 12): conv 3x3, max
# pool 2x2 stride 2, conv 3x3, conv 3x3, 1x1 heads (export/nets/mtcnn.py). So levels laid into one canvas at even
# offsets give, for every cell whose window lies inside its level, the per-level run's value. One exception:
# the pool has ceil_mode, so at a level of odd height (width) the last output row (column) reads a partial
# window whose missing half the per-level run ignores but a canvas fills with whatever lies below (right).
# Those cells come from runs on the level's last PNET_EDGE rows (columns) placed so that the level's edge is
# the run's edge; a level odd both ways needs its corner cell at a run's bottom-right corner.
PNET_EDGE = PNET_CELL_SIZE - 1  # rows of a level behind its last output row when the height is odd: the
# window [H - 11, H + 1) minus the missing row
PNET_BAND_OUTPUT_ROWS = 32  # the canvas runs in horizontal bands of this many output rows (+ 10 input rows of
# overlap), shared out to the workers; small bands keep a run's maps in cache (bench/pnet_packing.py)


def _even_up(value: int) -> int:
    return value + (value & 1)


@dataclass(frozen=True)
class PyramidLayout:
    """Where each pyramid level lies in the canvas that P-Net runs on once.

    height, width: the canvas; offsets: (y, x) of each level's top-left pixel, both even so that the level's
    cells fall on the canvas's output grid at (y // 2, x // 2).
    """

    height: int
    width: int
    offsets: tuple[tuple[int, int], ...]


def pack_pyramid(sizes: Sequence[tuple[int, int]]) -> PyramidLayout:
    """Shelf packing of levels (height, width), largest first, into a canvas as wide as the widest level.

    Each level goes on the first shelf with room (a shelf is as high as its first level); else it opens a
    new shelf below. Offsets are even; levels may touch (a cell straddling two levels is never read).
    About 84 % of a 0.709 pyramid's canvas is level pixels (bench/pnet_packing.py prints the share).
    """
    width = max((w for _, w in sizes), default=0)
    shelves: list[list[int]] = []  # y, height, next free x
    offsets: list[tuple[int, int]] = []
    bottom = 0
    for height, level_width in sizes:
        for shelf in shelves:
            if height <= shelf[1] and shelf[2] + level_width <= width:
                offsets.append((shelf[0], shelf[2]))
                shelf[2] = _even_up(shelf[2] + level_width)
                break
        else:
            y = _even_up(bottom)
            shelves.append([y, height, _even_up(level_width)])
            offsets.append((y, 0))
            bottom = y + height
    return PyramidLayout(height=bottom, width=width, offsets=tuple(offsets))


def pnet_map_size(height: int, width: int) -> tuple[int, int]:
    """P-Net's output map size for an input of height x width (the graph's (H - 3) // 2 - 3)."""
    return (height - 3) // 2 - 3, (width - 3) // 2 - 3


@dataclass(frozen=True)
class _PnetJob:
    """One P-Net run: input rows/cols of `source` to run on, and where its output cells go.

    pieces: (level, map_row, map_col, run_row, run_col, rows, cols): copy the run's output cells
    [run_row, +rows) x [run_col, +cols) to the level's map at [map_row, +rows) x [map_col, +cols).
    """

    image: Callable[[], np.ndarray]  # (1, 3, h, w) float32, built when the job runs
    pieces: tuple[tuple[int, int, int, int, int, int, int], ...]


def _band(canvas: np.ndarray, start: int, end: int) -> np.ndarray:
    return np.ascontiguousarray(canvas[:, :, start:end])


def pnet_jobs(sizes: Sequence[tuple[int, int]], layout: PyramidLayout, canvas: np.ndarray,
              band_rows: int | None = None) -> list[_PnetJob]:
    """The runs that together give every cell of every level's P-Net map, each cell exactly once.

    canvas: (1, 3, layout.height, layout.width) float32, the normalised levels at layout.offsets. Jobs: the
    canvas's bands; one run over the last PNET_EDGE rows of the odd-height levels side by side; one over the
    last PNET_EDGE columns of the odd-width levels stacked; an 11 x 11 run per remaining corner of a level odd
    both ways (the side-by-side runs give one corner each, the last level placed in them).
    """
    band_rows = band_rows or PNET_BAND_OUTPUT_ROWS
    maps = [pnet_map_size(h, w) for h, w in sizes]
    jobs: list[_PnetJob] = []
    # Bands of the canvas: output rows [r0, r1) need input rows [2 r0, 2 r1 + 10).
    canvas_rows, _ = pnet_map_size(layout.height, layout.width)
    for r0 in range(0, canvas_rows, band_rows):
        r1 = min(canvas_rows, r0 + band_rows)
        pieces = []
        for level, ((y, x), (h, w), (mh, mw)) in enumerate(zip(layout.offsets, sizes, maps, strict=True)):
            inner_h, inner_w = mh - (h & 1), mw - (w & 1)  # cells whose window lies inside the level
            top, stop = max(r0, y // 2), min(r1, y // 2 + inner_h)
            if top < stop and inner_w > 0:
                pieces.append((level, top - y // 2, 0, top - r0, x // 2, stop - top, inner_w))
        if pieces:
            start, end = 2 * r0, min(layout.height, 2 * r1 + PNET_CELL_SIZE - PNET_STRIDE)
            jobs.append(_PnetJob(partial(_band, canvas, start, end), tuple(pieces)))
    odd_h = [i for i, (h, _) in enumerate(sizes) if h & 1]
    odd_w = [i for i, (_, w) in enumerate(sizes) if w & 1]
    corners = [i for i in odd_h if sizes[i][1] & 1]
    # The last level in each side-by-side run has the run's corner: give it a level that needs one.
    bottom_last = corners[0] if corners else None
    right_last = corners[1] if len(corners) > 1 else None
    odd_h = [i for i in odd_h if i != bottom_last] + ([bottom_last] if bottom_last is not None else [])
    odd_w = [i for i in odd_w if i != right_last] + ([right_last] if right_last is not None else [])

    def region(level: int, rows: slice, cols: slice) -> np.ndarray:
        y, x = layout.offsets[level]
        h, w = sizes[level]
        return canvas[0, :, y:y + h, x:x + w][:, rows, cols]

    if odd_h:  # the last map row of each, from its last PNET_EDGE rows
        starts = np.cumsum([0] + [_even_up(sizes[i][1]) for i in odd_h[:-1]]).tolist()
        width = starts[-1] + sizes[odd_h[-1]][1]
        pieces = []
        for k, (level, x) in enumerate(zip(odd_h, starts, strict=True)):
            mh, mw = maps[level]
            cols = mw if k == len(odd_h) - 1 or not sizes[level][1] & 1 else mw - 1
            pieces.append((level, mh - 1, 0, 0, x // 2, 1, cols))

        def bottom_strips(levels: list[int] = odd_h, starts: list[int] = starts, width: int = width) -> np.ndarray:
            image = np.zeros((1, 3, PNET_EDGE, width), dtype=np.float32)
            for level, x in zip(levels, starts, strict=True):
                image[0, :, :, x:x + sizes[level][1]] = region(level, slice(-PNET_EDGE, None), slice(None))
            return image

        jobs.append(_PnetJob(bottom_strips, tuple(pieces)))
    if odd_w:  # the last map column of each, from its last PNET_EDGE columns
        starts = np.cumsum([0] + [_even_up(sizes[i][0]) for i in odd_w[:-1]]).tolist()
        height = starts[-1] + sizes[odd_w[-1]][0]
        pieces = []
        for k, (level, y) in enumerate(zip(odd_w, starts, strict=True)):
            mh, mw = maps[level]
            rows = mh if k == len(odd_w) - 1 or not sizes[level][0] & 1 else mh - 1
            pieces.append((level, 0, mw - 1, y // 2, 0, rows, 1))

        def right_strips(levels: list[int] = odd_w, starts: list[int] = starts, height: int = height) -> np.ndarray:
            image = np.zeros((1, 3, height, PNET_EDGE), dtype=np.float32)
            for level, y in zip(levels, starts, strict=True):
                image[0, :, y:y + sizes[level][0], :] = region(level, slice(None), slice(-PNET_EDGE, None))
            return image

        jobs.append(_PnetJob(right_strips, tuple(pieces)))
    for level in corners:
        if level in (bottom_last, right_last):
            continue
        mh, mw = maps[level]
        corner = region(level, slice(-PNET_EDGE, None), slice(-PNET_EDGE, None))[None]
        jobs.append(_PnetJob(partial(np.ascontiguousarray, corner), ((level, mh - 1, mw - 1, 0, 0, 1, 1),)))
    return jobs


# --- Box arithmetic -----------------------------------------------------------------------------------------
def best_scoring(scores: np.ndarray, limit: int) -> np.ndarray:
    """Indices (K,) int64 of the `limit` highest scores, in their original order; all when there are fewer.

    Ties at the cut go to the earlier index (a stable sort), so the choice is deterministic.
    """
    if scores.shape[0] <= limit:
        return np.arange(scores.shape[0], dtype=np.int64)
    return np.sort(np.argsort(-scores, kind="stable")[:limit])


def generate_boxes(offsets: np.ndarray, face_prob: np.ndarray, scale: float, threshold: float,
                   max_boxes: int | None = None) -> np.ndarray:
    """Candidate boxes from one P-Net output map, in image coordinates.

    offsets: (4, h, w) float32, face_prob: (h, w) float32 -> (K, 9) float32 rows
    x1, y1, x2, y2, score, dx1, dy1, dx2, dy2, in row-major map order. A map cell (row, col) covers the
    12x12 window at (STRIDE * col, STRIDE * row) of the scaled image; the reference maps it back as
    floor((STRIDE * col + 1) / scale) .. floor((STRIDE * col + CELL) / scale). With max_boxes, only that many
    best-scoring cells are kept (still in map order).
    """
    rows, cols = np.nonzero(face_prob >= threshold)
    if max_boxes is not None and rows.shape[0] > max_boxes:
        chosen = best_scoring(face_prob[rows, cols], max_boxes)
        rows, cols = rows[chosen], cols[chosen]
    cells = np.stack([cols, rows], axis=1).astype(np.float32)  # (K, 2) x, y
    scale32 = np.float32(scale)
    top_left = np.floor((np.float32(PNET_STRIDE) * cells + np.float32(1)) / scale32)
    bottom_right = np.floor((np.float32(PNET_STRIDE) * cells + np.float32(PNET_CELL_SIZE)) / scale32)
    return np.concatenate(
        [top_left, bottom_right, face_prob[rows, cols][:, None], offsets[:, rows, cols].T], axis=1
    ).astype(np.float32, copy=False)


def _overlaps(x1: np.ndarray, y1: np.ndarray, x2: np.ndarray, y2: np.ndarray, areas: np.ndarray,
              best: np.ndarray | np.intp, rest: np.ndarray, extra: np.float32, mode: NmsMode) -> np.ndarray:
    """Overlap of box(es) `best` with boxes `rest`, by the same float32 operations in the same order either way.

    best is one index (-> (len(rest),)) or a column of indices (B, 1) (-> (B, len(rest))).
    """
    inter_w = np.maximum(np.minimum(x2[best], x2[rest]) - np.maximum(x1[best], x1[rest]) + extra, 0)
    inter_h = np.maximum(np.minimum(y2[best], y2[rest]) - np.maximum(y1[best], y1[rest]) + extra, 0)
    inter = inter_w * inter_h
    if mode == "min":
        return np.asarray(inter / np.minimum(areas[best], areas[rest]))
    return np.asarray(inter / (areas[best] + areas[rest] - inter))


def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float, mode: NmsMode = "union") -> np.ndarray:
    """Greedy non-maximum suppression; returns kept indices (K,) int64, highest score first.

    boxes: (N, 4) float32 x1 y1 x2 y2; scores: (N,). A box is dropped when its overlap with a kept,
    higher-scoring box exceeds `threshold` (or is NaN). 'union': intersection over union with continuous
    areas, as torchvision.ops.nms (used by the reference after P-Net and R-Net). 'min': intersection over
    the smaller area with the pixel-inclusive (+1) extents of the authors' Matlab code (the reference after
    O-Net). Up to NMS_MATRIX_MAX_BOXES boxes, all pairwise overlaps are computed at once and the greedy pass
    only reads rows of that matrix; beyond, each step compares one kept box with all remaining ones. Both
    ways compute each overlap with the same float32 operations, so they keep the same boxes. The long way
    checks the job's deadline (app.deadline) at every step: nothing else could stop it.
    """
    if boxes.shape[0] == 0:
        return np.zeros(0, dtype=np.int64)
    extra = np.float32(1.0 if mode == "min" else 0.0)
    x1, y1, x2, y2 = (boxes[:, k] for k in range(4))
    areas = (x2 - x1 + extra) * (y2 - y1 + extra)
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    if order.size <= NMS_MATRIX_MAX_BOXES:
        # Rows and columns in score order: row i holds box order[i]'s overlaps with every box.
        within = ~(_overlaps(x1, y1, x2, y2, areas, order[:, None], order, extra, mode) <= threshold)
        alive = np.ones(order.size, dtype=bool)
        for i in range(order.size):
            if alive[i]:
                keep.append(int(order[i]))
                alive[i + 1:] &= ~within[i, i + 1:]
        return np.asarray(keep, dtype=np.int64)
    while order.size:
        check_deadline()
        best, rest = order[0], order[1:]
        keep.append(int(best))
        if not rest.size:
            break
        order = rest[_overlaps(x1, y1, x2, y2, areas, best, rest, extra, mode) <= threshold]
    return np.asarray(keep, dtype=np.int64)


def calibrate(boxes: np.ndarray, offsets: np.ndarray, *, pixel_inclusive: bool) -> np.ndarray:
    """Apply regression offsets: x1 + dx1 * w, y1 + dy1 * h, x2 + dx2 * w, y2 + dy2 * h.

    boxes: (N, 4) float32, offsets: (N, 4) float32 -> (N, 4) float32. The reference takes w = x2 - x1 after
    P-Net and w = x2 - x1 + 1 (pixel_inclusive) after R-Net and O-Net.
    """
    extra = np.float32(1.0 if pixel_inclusive else 0.0)
    width = boxes[:, 2] - boxes[:, 0] + extra
    height = boxes[:, 3] - boxes[:, 1] + extra
    sizes = np.stack([width, height, width, height], axis=1)
    return (boxes + offsets * sizes).astype(np.float32, copy=False)


def square(boxes: np.ndarray) -> np.ndarray:
    """Grow each box to a square of side max(w, h) about its centre. (N, 4) float32 -> (N, 4) float32."""
    width = boxes[:, 2] - boxes[:, 0]
    height = boxes[:, 3] - boxes[:, 1]
    side = np.maximum(width, height)
    half = np.float32(0.5)
    x1 = boxes[:, 0] + width * half - side * half
    y1 = boxes[:, 1] + height * half - side * half
    return np.stack([x1, y1, x1 + side, y1 + side], axis=1).astype(np.float32, copy=False)


def crop_regions(boxes: np.ndarray, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """The pixels each box covers, clipped to the image: regions (N, 4) int64 and valid (N,) bool.

    Like the reference, coordinates are truncated towards zero and read as 1-based inclusive pixel indices:
    columns [max(trunc(x1), 1) - 1, min(trunc(x2), W)) and likewise rows. A part of a box outside the image
    is cut off (the crop is then stretched to the net's input), not zero-padded. A box entirely outside
    the image gives an empty region: valid is False and the box must be dropped.
    """
    coords = np.trunc(boxes).astype(np.int64)
    x1 = np.maximum(coords[:, 0], 1) - 1
    y1 = np.maximum(coords[:, 1], 1) - 1
    x2 = np.minimum(coords[:, 2], width)
    y2 = np.minimum(coords[:, 3], height)
    regions = np.stack([y1, y2, x1, x2], axis=1)
    return regions, (y2 > y1) & (x2 > x1)


def landmarks_to_image(boxes: np.ndarray, points: np.ndarray) -> np.ndarray:
    """O-Net landmark fractions to image pixels. boxes (N, 4), points (N, 10) five x then five y -> (N, 5, 2).

    The reference measures from x1 - 1 over the pixel-inclusive width x2 - x1 + 1.
    """
    one = np.float32(1.0)
    width = (boxes[:, 2] - boxes[:, 0] + one)[:, None]
    height = (boxes[:, 3] - boxes[:, 1] + one)[:, None]
    xs = width * points[:, :5] + boxes[:, 0:1] - one
    ys = height * points[:, 5:] + boxes[:, 1:2] - one
    return np.stack([xs, ys], axis=2).astype(np.float32, copy=False)


def largest_faces(faces: Sequence[Face], max_faces: int | None) -> list[Face]:
    """The max_faces largest faces by box area (all when None), then in score order."""
    chosen = list(faces)
    if max_faces is not None and len(chosen) > max_faces:
        chosen = sorted(chosen, key=lambda face: face.area, reverse=True)[:max_faces]
    return sorted(chosen, key=lambda face: face.score, reverse=True)


# --- The detector -------------------------------------------------------------------------------------------
def _run(runner: Runner, batch: np.ndarray) -> dict[str, np.ndarray]:
    """Run a net on its one input; outputs by the names read from the graph."""
    return dict(zip(runner.output_names, runner.run({runner.input_names[0]: batch}), strict=True))


class _Workers:
    """Runs independent tasks of detections in `count` threads, or inline when count is 1.

    One pool per detector, shared by every request it serves: however many requests detect at once, MTCNN
    keeps at most `count` threads busy (the service sizes it to its cores), instead of each request starting
    a pool of its own and the threads outnumbering the cores. Each task runs in a copy of the caller's
    context, which carries the request's deadline (app.deadline), so a cancelled request stops its nets in
    every thread. Tasks never submit tasks, so requests sharing the pool cannot wait on each other in a cycle.
    """

    def __init__(self, count: int) -> None:
        self.count = count
        self._pool = ThreadPoolExecutor(max_workers=count, thread_name_prefix="mtcnn") if count > 1 else None

    def map(self, function: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
        """function over items, results in items' order; tasks start in that order."""
        if self._pool is None:
            return [function(item) for item in items]
        # Even one task goes to the pool: then the nets of all requests together run on `count` threads.
        tasks = [self._pool.submit(contextvars.copy_context().run, function, item) for item in items]
        try:
            return [task.result() for task in tasks]
        finally:
            for task in tasks:
                task.cancel()  # after a failure (a passed deadline), the rest need not start

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> _Workers:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class MtcnnDetector:
    """The three-stage cascade over three Runners (app.runtime.ModelSession or a test wrapper).

    Nets: mtcnn-pnet (image (1,3,H,W) -> box_offsets (1,4,h,w), face_prob (1,h,w)), mtcnn-rnet
    (image (N,3,24,24) -> box_offsets (N,4), face_prob (N,)), mtcnn-onet (image (N,3,48,48) -> box_offsets,
    landmarks (N,10), face_prob). Stateless between calls; safe to share across threads if the Runners are.

    workers: how many threads run the nets at once. P-Net runs whole pyramid levels in parallel, R-Net and
    O-Net run their crops in one chunk per worker. On a CPU, give the nets sessions with one intra-op thread
    and as many workers as cores: independent runs keep the cores busier than onnxruntime's parallel loops
    within one run (bench/bench_detect.py). Results do not depend on the number of workers.

    packing: 'per_level' runs P-Net once per pyramid level; 'packed' lays all levels into one canvas and runs
    it in bands (pnet_jobs). Both give the same P-Net maps, cell for cell, and so the same detections
    (tests/models/test_mtcnn_packing.py). On the 2-core CPU 'packed' is the slower (whole detection 1.13-1.4x
    the per-level time at 1080p, 640x480 and a 2333x1434 photo, bench/pnet_packing.py): the canvas is ~19 %
    larger than the levels it holds, and small per-level maps stay in cache. It also holds every level at
    once (the canvas: ~2x level 0 at scale_factor 0.709, ~10x at 0.95), which detection_peak_bytes, measured
    per level, does not cover; so the service keeps 'per_level'. 'packed' is for devices where fewer, larger
    runs pay (a GPU: one canvas shape per image size), after measuring there.
    """

    def __init__(self, pnet: Runner, rnet: Runner, onet: Runner, workers: int = 1,
                 packing: PnetPacking = "per_level") -> None:
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        if packing not in ("per_level", "packed"):
            raise ValueError(f"packing must be 'per_level' or 'packed', got {packing!r}")
        self.pnet, self.rnet, self.onet = pnet, rnet, onet
        self.packing = packing
        self.workers = workers
        self._workers = _Workers(workers)

    def close(self) -> None:
        """Stop the worker threads (the service's lifespan calls this at shutdown)."""
        self._workers.close()

    def detect(self, image_rgb: np.ndarray, params: DetectionParams | None = None) -> list[Face]:
        """Faces in an (H, W, 3) uint8 RGB image, highest score first; [] when there is none."""
        return self.run(image_rgb, params).faces

    def run(self, image_rgb: np.ndarray, params: DetectionParams | None = None) -> DetectionResult:
        """Like detect, with per-stage timings (ms) and candidate counts."""
        params = params or DetectionParams()
        if image_rgb.ndim != 3 or image_rgb.shape[2] != 3 or image_rgb.dtype != np.uint8:
            raise InvalidImage(
                f"expected an (H, W, 3) uint8 RGB image, got {image_rgb.shape} {image_rgb.dtype}")
        result = DetectionResult(faces=[])
        clock = time.perf_counter()

        def lap(stage: str) -> None:
            nonlocal clock
            now = time.perf_counter()
            result.timings_ms[stage] = round((now - clock) * 1000.0, 3)
            clock = now

        height, width = image_rgb.shape[:2]
        workers = self._workers
        resampler = AreaResampler(image_rgb)
        boxes = self._propose(workers, resampler, params)  # (N, 4) squared candidates
        result.candidates["pnet"] = len(boxes)
        lap("pnet")
        check_deadline()
        boxes, _ = self._refine(workers, resampler, boxes, params.thresholds[1])
        result.candidates["rnet"] = len(boxes)
        lap("rnet")
        check_deadline()
        boxes, scores, points = self._output(workers, resampler, boxes, params.thresholds[2])
        result.candidates["onet"] = len(boxes)
        lap("onet")
        faces = [Face(box=boxes[i], score=float(scores[i]), landmarks=points[i]) for i in range(len(boxes))]
        result.faces = largest_faces(faces, params.max_faces)
        log.debug("mtcnn %dx%d: %s faces, %s ms", width, height, len(result.faces), result.timings_ms)
        return result

    def pnet_maps(self, resampler: AreaResampler, sizes: Sequence[tuple[int, int]], packed: bool
                  ) -> list[tuple[np.ndarray, np.ndarray]]:
        """P-Net's maps per level, offsets (4, h, w) and face_prob (h, w) float32, either way (for tests and
        bench/pnet_packing.py; a detection runs the per-level way inside _propose)."""
        if packed:
            return self._pnet_packed(self._workers, resampler, sizes)

        def one(size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
            outputs = _run(self.pnet, normalise(resampler.level(*size))[None])
            return outputs["box_offsets"][0], outputs["face_prob"][0]

        return self._workers.map(one, list(sizes))

    def _pnet_packed(self, workers: _Workers, resampler: AreaResampler, sizes: Sequence[tuple[int, int]]
                     ) -> list[tuple[np.ndarray, np.ndarray]]:
        """All levels' P-Net maps from the runs of pnet_jobs over one packed canvas."""
        if not sizes:
            return []
        layout = pack_pyramid(sizes)
        canvas = np.zeros((1, 3, layout.height, layout.width), dtype=np.float32)  # gaps: any value does
        for (y, x), (h, w) in zip(layout.offsets, sizes, strict=True):
            resampled = canvas[0, :, y:y + h, x:x + w]
            resampled[...] = resampler.level(h, w)
            normalise(resampled)
        check_deadline()
        maps = [(np.empty((4, *pnet_map_size(h, w)), np.float32), np.empty(pnet_map_size(h, w), np.float32))
                for h, w in sizes]

        def run(job: _PnetJob) -> None:
            outputs = _run(self.pnet, job.image())
            offsets, prob = outputs["box_offsets"][0], outputs["face_prob"][0]
            for level, map_row, map_col, run_row, run_col, rows, cols in job.pieces:  # disjoint: no lock
                level_offsets, level_prob = maps[level]
                level_offsets[:, map_row:map_row + rows, map_col:map_col + cols] = \
                    offsets[:, run_row:run_row + rows, run_col:run_col + cols]
                level_prob[map_row:map_row + rows, map_col:map_col + cols] = \
                    prob[run_row:run_row + rows, run_col:run_col + cols]
            check_deadline()

        workers.map(run, pnet_jobs(sizes, layout, canvas))
        return maps

    def _propose(self, workers: _Workers, resampler: AreaResampler, params: DetectionParams) -> np.ndarray:
        """Stage 1: P-Net over the pyramid -> (N, 4) float32 calibrated, squared boxes, best first."""
        height, width = resampler.height, resampler.width
        scales = pyramid_scales(height, width, params.min_face_size, params.scale_factor)
        sizes = [scaled_size(height, width, scale) for scale in scales]

        def level_candidates(offsets: np.ndarray, prob: np.ndarray, scale: float) -> np.ndarray:
            """This level's candidates after its NMS: (K, 9) rows as generate_boxes."""
            candidates = generate_boxes(offsets, prob, scale, params.thresholds[0],
                                        max_boxes=PNET_MAX_CELLS_PER_LEVEL)
            check_deadline()
            return candidates[nms(candidates[:, :4], candidates[:, 4], PNET_SCALE_NMS_IOU)]

        def propose_level(level: int) -> np.ndarray:
            """Resample, run P-Net, keep this level's candidates."""
            outputs = _run(self.pnet, normalise(resampler.level(*sizes[level]))[None])
            return level_candidates(outputs["box_offsets"][0], outputs["face_prob"][0], scales[level])

        if self.packing == "packed" and sizes:
            maps = self._pnet_packed(workers, resampler, sizes)
            per_scale = workers.map(lambda level: level_candidates(maps[level][0], maps[level][1], scales[level]),
                                    range(len(sizes)))
        else:
            # Largest level first: it is about half the work, so one worker takes it while the others share
            # the rest. Gathered in scale order, as a sequential loop would.
            per_scale = workers.map(propose_level, range(len(sizes)))
        if not per_scale:
            return np.zeros((0, 4), dtype=np.float32)
        candidates = np.concatenate(per_scale, axis=0)  # (N, 9)
        candidates = candidates[best_scoring(candidates[:, 4], PNET_MAX_PROPOSALS)]
        candidates = candidates[nms(candidates[:, :4], candidates[:, 4], PNET_CROSS_SCALE_NMS_IOU)]
        return square(calibrate(candidates[:, :4], candidates[:, 5:9], pixel_inclusive=False))

    def _run_on_crops(self, workers: _Workers, net: Runner, resampler: AreaResampler, boxes: np.ndarray,
                      size: int, min_chunk: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """The net's outputs on the normalised size x size crops of the boxes that touch the image, and those
        boxes' indices. The crops are cut and run in one chunk per worker, none smaller than min_chunk crops;
        outputs are concatenated in box order."""
        regions, valid = crop_regions(boxes, resampler.height, resampler.width)
        kept = np.flatnonzero(valid)
        if not len(kept):
            return {}, kept
        count = max(1, min(workers.count, len(kept) // min_chunk), -(-len(kept) // MAX_CROPS_PER_CHUNK))
        chunks = np.array_split(regions[kept], count)
        per_chunk = workers.map(lambda chunk: _run(net, normalise(resampler.crops(chunk, size))), chunks)
        return {name: np.concatenate([outputs[name] for outputs in per_chunk]) for name in per_chunk[0]}, kept

    def _refine(self, workers: _Workers, resampler: AreaResampler, boxes: np.ndarray, threshold: float
                ) -> tuple[np.ndarray, np.ndarray]:
        """Stage 2: R-Net on all crops -> (M, 4) squared boxes and (M,) scores, best first."""
        outputs, kept = self._run_on_crops(workers, self.rnet, resampler, boxes, RNET_INPUT_SIZE,
                                           RNET_MIN_CROPS_PER_CHUNK)
        if not len(kept):
            return boxes[kept], np.zeros(0, dtype=np.float32)
        passed = outputs["face_prob"] > threshold
        boxes, scores = boxes[kept][passed], outputs["face_prob"][passed]
        offsets = outputs["box_offsets"][passed]
        keep = nms(boxes, scores, RNET_NMS_IOU)
        return square(calibrate(boxes[keep], offsets[keep], pixel_inclusive=True)), scores[keep]

    def _output(self, workers: _Workers, resampler: AreaResampler, boxes: np.ndarray, threshold: float
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Stage 3: O-Net on all crops -> boxes (K, 4), scores (K,), landmarks (K, 5, 2), best first.

        Landmarks are placed with the crop boxes, before those boxes are calibrated (as the reference does).
        """
        outputs, kept = self._run_on_crops(workers, self.onet, resampler, boxes, ONET_INPUT_SIZE,
                                           ONET_MIN_CROPS_PER_CHUNK)
        if not len(kept):
            return boxes[kept], np.zeros(0, dtype=np.float32), np.zeros((0, 5, 2), dtype=np.float32)
        passed = outputs["face_prob"] > threshold
        boxes, scores = boxes[kept][passed], outputs["face_prob"][passed]
        points = landmarks_to_image(boxes, outputs["landmarks"][passed])
        boxes = calibrate(boxes, outputs["box_offsets"][passed], pixel_inclusive=True)
        keep = nms(boxes, scores, ONET_NMS_MIN_OVERLAP, mode="min")
        return boxes[keep], scores[keep], points[keep]

