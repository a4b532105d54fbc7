"""MTCNN pipeline steps (app/pipelines/mtcnn.py) against hand-computed values and naive re-implementations."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pytest

from app.errors import InvalidImage, InvalidParameter
from app.pipelines.mtcnn import (
    AreaResampler,
    DetectionParams,
    Face,
    MtcnnDetector,
    calibrate,
    crop_regions,
    generate_boxes,
    landmarks_to_image,
    largest_faces,
    nms,
    pooling_bins,
    pyramid_scales,
    scaled_size,
    square,
)


def naive_area(image: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """Adaptive average pooling written out bin by bin: (H, W, 3) -> (3, out_h, out_w) float64."""
    height, width = image.shape[:2]
    out = np.zeros((3, out_h, out_w))
    for i in range(out_h):
        r0, r1 = (i * height) // out_h, -((-(i + 1) * height) // out_h)
        for j in range(out_w):
            c0, c1 = (j * width) // out_w, -((-(j + 1) * width) // out_w)
            out[:, i, j] = image[r0:r1, c0:c1].reshape(-1, 3).mean(axis=0)
    return out


def test_pyramid_scales_match_hand_computation() -> None:
    scales = pyramid_scales(480, 640, 20, 0.709)
    # 12/20 = 0.6; 480 * 0.6 = 288 shrinks by 0.709 while >= 12: 288 * 0.709**k >= 12 for k <= 9.
    assert len(scales) == 10
    np.testing.assert_allclose(scales, [0.6 * 0.709**k for k in range(10)], rtol=1e-12)
    assert pyramid_scales(11, 400, 12, 0.709) == []  # shorter side below one P-Net cell: no level
    assert pyramid_scales(100, 100, 200, 0.709) == []  # faces larger than the image
    assert scaled_size(480, 640, 0.6) == (289, 385)  # int(h * s + 1), the reference's sizes


def test_pooling_bins_follow_adaptive_pooling() -> None:
    starts, ends = pooling_bins(5, 3)
    assert starts.tolist() == [0, 1, 3] and ends.tolist() == [2, 4, 5]
    starts, ends = pooling_bins(2, 4)  # upsampling repeats pixels
    assert starts.tolist() == [0, 0, 1, 1] and ends.tolist() == [1, 1, 2, 2]


@pytest.mark.parametrize("size", [(7, 5), (13, 29), (40, 40), (3, 2)])
def test_area_level_matches_naive_pooling(size: tuple[int, int]) -> None:
    image = np.random.default_rng(1).integers(0, 256, size=(23, 31, 3), dtype=np.uint8)
    got = AreaResampler(image).level(*size)
    assert got.shape == (3, *size) and got.dtype == np.float32
    np.testing.assert_allclose(got, naive_area(image, *size), rtol=0, atol=1e-4)


def test_area_crops_match_naive_pooling_of_each_region() -> None:
    image = np.random.default_rng(2).integers(0, 256, size=(40, 50, 3), dtype=np.uint8)
    regions = np.array([[0, 40, 0, 50], [5, 17, 3, 30], [10, 12, 20, 21], [39, 40, 49, 50]], dtype=np.int64)
    got = AreaResampler(image).crops(regions, 24)
    assert got.shape == (4, 3, 24, 24) and got.dtype == np.float32
    for k, (r0, r1, c0, c1) in enumerate(regions):
        np.testing.assert_allclose(got[k], naive_area(image[r0:r1, c0:c1], 24, 24), rtol=0, atol=1e-4)
    assert AreaResampler(image).crops(np.zeros((0, 4), dtype=np.int64), 48).shape == (0, 3, 48, 48)


def test_generate_boxes_maps_cells_back_to_the_image() -> None:
    prob = np.zeros((3, 4), dtype=np.float32)
    prob[1, 2], prob[2, 0], prob[0, 3] = 0.9, 0.6, 0.59
    offsets = np.arange(4 * 3 * 4, dtype=np.float32).reshape(4, 3, 4) / 100
    boxes = generate_boxes(offsets, prob, 0.5, 0.6)
    # Row-major order: (row 1, col 2) then (row 2, col 0); 0.59 is below the threshold, 0.6 is not.
    expected = np.array([
        [np.floor((2 * 2 + 1) / 0.5), np.floor((2 * 1 + 1) / 0.5), np.floor((2 * 2 + 12) / 0.5),
         np.floor((2 * 1 + 12) / 0.5), 0.9, 0.06, 0.18, 0.30, 0.42],
        [1 / 0.5, np.floor(5 / 0.5), 12 / 0.5, np.floor(16 / 0.5), 0.6, 0.08, 0.20, 0.32, 0.44],
    ], dtype=np.float32)
    np.testing.assert_allclose(boxes, expected, rtol=0, atol=1e-6)
    assert generate_boxes(offsets, prob, 0.5, 0.95).shape == (0, 9)


def test_nms_union_and_min() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [2, 2, 6, 6]], dtype=np.float32)
    scores = np.array([0.9, 0.95, 0.8, 0.7], dtype=np.float32)
    # IoU(0, 1) = 81 / 119 = 0.68; box 3 lies inside 1 with IoU 16 / 100.
    assert nms(boxes, scores, 0.5).tolist() == [1, 2, 3]
    assert nms(boxes, scores, 0.7).tolist() == [1, 0, 2, 3]
    # 'min': box 3 (5x5 pixels inclusive) is entirely inside box 1, overlap 1.0.
    assert nms(boxes, scores, 0.7, mode="min").tolist() == [1, 2]
    assert nms(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), 0.5).shape == (0,)


def test_calibrate_square_and_crop_regions() -> None:
    boxes = np.array([[10, 20, 30, 60]], dtype=np.float32)
    offsets = np.array([[0.1, -0.1, 0.2, 0.0]], dtype=np.float32)
    np.testing.assert_allclose(calibrate(boxes, offsets, pixel_inclusive=False), [[12, 16, 34, 60]],
                               atol=1e-5)
    np.testing.assert_allclose(calibrate(boxes, offsets, pixel_inclusive=True), [[12.1, 15.9, 34.2, 60]],
                               atol=1e-5)
    np.testing.assert_allclose(square(boxes), [[0, 20, 40, 60]])  # 20x40 -> 40x40 about the centre
    regions, valid = crop_regions(np.array([[-5.7, 3.9, 20.2, 30.9], [100, 5, 120, 9], [2, 3, 4, 5]],
                                           dtype=np.float32), height=25, width=50)
    # trunc(-5.7) = -5 -> column 1 -> index 0; rows start at trunc(3.9) - 1 = 2 and stop at min(30, 25).
    assert regions[0].tolist() == [2, 25, 0, 20] and regions[2].tolist() == [2, 5, 1, 4]
    assert valid.tolist() == [True, False, True]  # the second box lies right of the image


def test_landmarks_to_image() -> None:
    boxes = np.array([[10, 20, 29, 59]], dtype=np.float32)  # 20 x 40 pixels inclusive
    points = np.array([[0, 0.5, 1, 0.25, 0.75, 0, 0.5, 1, 0.25, 0.75]], dtype=np.float32)
    got = landmarks_to_image(boxes, points)
    assert got.shape == (1, 5, 2)
    np.testing.assert_allclose(got[0, :, 0], [9, 19, 29, 14, 24])
    np.testing.assert_allclose(got[0, :, 1], [19, 39, 59, 29, 49])


def _face(box: list[float], score: float) -> Face:
    return Face(box=np.array(box, dtype=np.float32), score=score, landmarks=np.zeros((5, 2), np.float32))


def test_largest_faces_keeps_the_biggest_then_orders_by_score() -> None:
    faces = [_face([0, 0, 10, 10], 0.99), _face([0, 0, 50, 50], 0.8), _face([0, 0, 30, 30], 0.9)]
    assert [f.score for f in largest_faces(faces, 2)] == [0.9, 0.8]
    assert [f.score for f in largest_faces(faces, None)] == [0.99, 0.9, 0.8]
    assert faces[1].as_dict()["landmarks"]["mouth_right"] == [0.0, 0.0]


@pytest.mark.parametrize("kwargs", [
    {"min_face_size": 11}, {"min_face_size": 20.5}, {"min_face_size": True},
    {"thresholds": (0.6, 0.7)}, {"thresholds": (0.6, 0.7, 1.5)}, {"thresholds": (0.6, float("nan"), 0.7)},
    {"scale_factor": 0.05}, {"scale_factor": 0.96}, {"scale_factor": float("nan")},
    {"max_faces": 0}, {"max_faces": 2.0},
])
def test_invalid_parameters_raise(kwargs: dict[str, object]) -> None:
    with pytest.raises(InvalidParameter):
        DetectionParams(**kwargs)  # type: ignore[arg-type]


def test_defaults_are_mtcnns() -> None:
    params = DetectionParams()
    assert (params.min_face_size, params.thresholds, params.scale_factor, params.max_faces) == (
        20, (0.6, 0.7, 0.7), 0.709, None)
    params = DetectionParams(min_face_size=np.int64(12), thresholds=[0, 0.5, 1], scale_factor=0.1,  # type: ignore[arg-type]
                             max_faces=1)
    assert params.thresholds == (0.0, 0.5, 1.0) and type(params.min_face_size) is int
    with pytest.raises(InvalidParameter):
        DetectionParams(thresholds="0.6")  # type: ignore[arg-type]


class SilentPNet:
    """A P-Net stand-in that finds nothing: every face probability is 0."""

    input_names = ["image"]
    output_names = ["face_prob", "box_offsets"]  # not the graph's order: the detector must use the names

    def __init__(self) -> None:
        self.shapes: list[tuple[int, ...]] = []

    def run(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        image = feeds["image"]
        self.shapes.append(image.shape)
        h, w = (image.shape[2] - 1) // 2 - 4, (image.shape[3] - 1) // 2 - 4
        return [np.zeros((1, h, w), np.float32), np.zeros((1, 4, h, w), np.float32)]


class Unused:
    input_names = ["image"]
    output_names: list[str] = []

    def run(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        raise AssertionError("no candidate should reach this net")


def test_detector_without_candidates_returns_empty_list_and_runs_each_level_once() -> None:
    pnet = SilentPNet()
    detector = MtcnnDetector(pnet, Unused(), Unused())
    result = detector.run(np.full((60, 80, 3), 128, np.uint8))
    assert result.faces == [] and set(result.timings_ms) == {"pnet", "rnet", "onet"}
    assert pnet.shapes == [(1, 3, *scaled_size(60, 80, s)) for s in pyramid_scales(60, 80, 20, 0.709)]
    assert detector.detect(np.zeros((5, 5, 3), np.uint8)) == []  # smaller than one P-Net cell


class OutsidePNet(SilentPNet):
    """One confident cell whose regression offsets push the box far right of the image."""

    def run(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        prob, offsets = super().run(feeds)
        prob[0, 0, 0] = 0.99
        offsets[0, [0, 2], 0, 0] = 100.0
        return [prob, offsets]


def test_boxes_entirely_outside_the_image_are_dropped_before_rnet() -> None:
    result = MtcnnDetector(OutsidePNet(), Unused(), Unused()).run(np.zeros((40, 40, 3), np.uint8))
    assert result.candidates["pnet"] >= 1 and result.candidates["rnet"] == 0 and result.faces == []


@pytest.mark.parametrize("image", [np.zeros((10, 10), np.uint8), np.zeros((10, 10, 4), np.uint8),
                                   np.zeros((10, 10, 3), np.float32)])
def test_detector_rejects_non_rgb8_images(image: np.ndarray) -> None:
    with pytest.raises(InvalidImage):
        MtcnnDetector(SilentPNet(), Unused(), Unused()).detect(image)
