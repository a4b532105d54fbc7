"""P-Net once over a packed canvas (MtcnnDetector packing='packed') vs once per pyramid level, on the real ONNX
file: every map cell bit for bit equal (the bound is 0; the brief allowed 1e-5) and the detections identical,
on photos and on noise images of many sizes and aspect ratios."""

from __future__ import annotations

from functools import cache

import numpy as np
import pytest

from app.pipelines.mtcnn import (
    AreaResampler,
    DetectionParams,
    MtcnnDetector,
    _run,
    normalise,
    pack_pyramid,
    pnet_map_size,
    pyramid_scales,
    scaled_size,
)
from tests.golden.make_mtcnn_goldens import case_image
from tests.helpers import MODELS_DIR, OnnxRunner

NOISE_SIZES = [(12, 12), (13, 17), (37, 53), (100, 61), (64, 64), (123, 301), (301, 123), (480, 640), (77, 99),
               (40, 500)]
PHOTO_CASES = ["astronaut", "obama", "obama_640x480"]


@cache
def detectors() -> tuple[MtcnnDetector, MtcnnDetector]:
    nets = [OnnxRunner(MODELS_DIR / f"mtcnn_{net}.onnx", threads=1) for net in ("pnet", "rnet", "onet")]
    return (MtcnnDetector(*nets, workers=2, packing="per_level"),
            MtcnnDetector(*nets, workers=2, packing="packed"))


def noise(height: int, width: int) -> np.ndarray:
    return np.random.default_rng(height * 10007 + width).integers(0, 256, (height, width, 3), dtype=np.uint8)


def assert_same_maps(image: np.ndarray, min_face_size: int, scale_factor: float) -> None:
    height, width = image.shape[:2]
    sizes = [scaled_size(height, width, s) for s in pyramid_scales(height, width, min_face_size, scale_factor)]
    resampler = AreaResampler(image)
    per_level, packed = detectors()
    expected = per_level.pnet_maps(resampler, sizes, packed=False)
    got = packed.pnet_maps(resampler, sizes, packed=True)
    for (h, w), (offsets, prob), (packed_offsets, packed_prob) in zip(sizes, expected, got, strict=True):
        assert packed_prob.shape == prob.shape == pnet_map_size(h, w)
        np.testing.assert_array_equal(packed_prob, prob)
        np.testing.assert_array_equal(packed_offsets, offsets)


@pytest.mark.parametrize("size", NOISE_SIZES)
@pytest.mark.parametrize("min_face_size", [12, 20, 40])
@pytest.mark.parametrize("scale_factor", [0.709, 0.95])
def test_noise_maps_are_identical(size: tuple[int, int], min_face_size: int, scale_factor: float) -> None:
    assert_same_maps(noise(*size), min_face_size, scale_factor)


@pytest.mark.parametrize("case", PHOTO_CASES)
@pytest.mark.parametrize("min_face_size", [12, 20, 40])
@pytest.mark.parametrize("scale_factor", [0.709, 0.95])
def test_photo_maps_and_detections_are_identical(case: str, min_face_size: int, scale_factor: float) -> None:
    image = case_image(case)
    assert_same_maps(image, min_face_size, scale_factor)
    params = DetectionParams(min_face_size=min_face_size, scale_factor=scale_factor)
    per_level, packed = (detector.run(image, params) for detector in detectors())
    assert per_level.candidates == packed.candidates
    assert len(per_level.faces) == len(packed.faces)
    for a, b in zip(per_level.faces, packed.faces, strict=True):
        np.testing.assert_array_equal(a.box, b.box)
        np.testing.assert_array_equal(a.landmarks, b.landmarks)
        assert a.score == b.score


@pytest.mark.parametrize("size", [(120, 160), (77, 99), (300, 40)])
def test_noise_detections_are_identical_at_low_thresholds(size: tuple[int, int]) -> None:
    """Low thresholds keep many candidates, so every P-Net cell counts."""
    params = DetectionParams(min_face_size=12, thresholds=(0.2, 0.3, 0.3), scale_factor=0.8)
    per_level, packed = (detector.run(noise(*size), params) for detector in detectors())
    assert per_level.candidates == packed.candidates and per_level.candidates["pnet"] > 0
    assert [f.as_dict() for f in per_level.faces] == [f.as_dict() for f in packed.faces]


def test_a_plain_canvas_gets_odd_edges_wrong() -> None:
    """Why the edge runs exist: at a level of odd size the ceil-mode pool's last window is partial in the
    per-level run but reads the gap's pixels in a canvas, so a canvas alone changes those cells."""
    image = noise(97, 131)
    size = scaled_size(97, 131, 1.0)
    assert size == (98, 132)  # even: no partial window
    odd = (97, 131)
    resampler = AreaResampler(image)
    pnet = detectors()[0].pnet
    alone = _run(pnet, normalise(resampler.level(*odd))[None])["face_prob"][0]
    layout = pack_pyramid([odd, odd])
    canvas = np.zeros((1, 3, layout.height, layout.width), dtype=np.float32)
    canvas[0, :, :97, :131] = normalise(resampler.level(*odd))
    canvas[0, :, 98:, :131] = 5.0  # anything may lie in the gap
    in_canvas = _run(pnet, canvas)["face_prob"][0][:alone.shape[0], :alone.shape[1]]
    np.testing.assert_array_equal(in_canvas[:-1, :-1], alone[:-1, :-1])
    assert not np.array_equal(in_canvas[-1], alone[-1]) and not np.array_equal(in_canvas[:, -1], alone[:, -1])
