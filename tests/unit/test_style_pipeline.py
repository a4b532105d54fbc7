"""app/pipelines/style.py with stand-in runners: spec parsing, sizes, padding, strength, colour, errors."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pytest

from app.errors import InvalidImage, InvalidParameter, UnknownStyle
from app.pipelines.style import (
    FILTER_IDS,
    NUM_MULTI_STYLES,
    Stylizer,
    blend,
    fit_within,
    keep_colours,
    multi_style_weights,
    pad_to_multiple,
    parse_style_terms,
)


class RecordingNet:
    """A Runner standing in for an NCHW style network: inverts the image, records what it was fed."""

    def __init__(self, input_names: list[str], multiple: int = 4) -> None:
        self.input_names = input_names
        self.output_names = ["stylized"]
        self.multiple = multiple
        self.feeds: list[dict[str, np.ndarray]] = []

    def run(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        self.feeds.append(dict(feeds))
        image = feeds[self.input_names[0]]
        if image.shape[2] % self.multiple or image.shape[3] % self.multiple:
            raise ValueError(f"network fed {image.shape}, not a multiple of {self.multiple}")
        return [1.0 - image]


class ArbitraryNets:
    """Predictor and NHWC transformer stand-ins."""

    class Predictor:
        input_names = ["style_image"]
        output_names = ["vector"]

        def run(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
            if feeds["style_image"].shape != (1, 256, 256, 3):
                raise ValueError("predictor fed the wrong size")
            return [np.full((1, 1, 1, 100), float(feeds["style_image"].mean()), dtype=np.float32)]

    class Transformer:
        input_names = ["content_image", "vector"]
        output_names = ["out"]

        def run(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
            content = feeds["content_image"]
            if content.shape[1] % 4 or content.shape[2] % 4 or feeds["vector"].shape != (1, 1, 1, 100):
                raise ValueError("transformer fed the wrong shape")
            return [np.clip(content * 0.5 + 0.25, 0, 1)]


CATALOGUE: dict[str, Any] = {"styles": [
    *({"id": str(i), "name": f"style number {i}", "kind": "multi-style", "source": "test", "index": i,
       "model": "style-multi26", "preview": None} for i in range(NUM_MULTI_STYLES)),
    {"id": "my-trained", "name": "My Trained", "kind": "trained", "source": "test", "model": "style-trained-x",
     "pad_multiple": 4, "preview": None},
    {"id": "arbitrary", "name": "any style image", "kind": "arbitrary", "source": "test",
     "model": "style-arbitrary-transform", "predictor": "style-arbitrary-predict", "preview": None},
    *({"id": f, "name": f"filter {f}", "kind": "filter", "source": "OpenCV", "model": None, "preview": None}
      for f in FILTER_IDS),
    {"id": "missing-model", "name": "missing", "kind": "trained", "source": "test", "model": "not-loaded"},
]}


@pytest.fixture
def nets() -> dict[str, Any]:
    return {
        "style-multi26": RecordingNet(["image", "style"]),
        "style-trained-x": RecordingNet(["image"]),
        "style-arbitrary-predict": ArbitraryNets.Predictor(),
        "style-arbitrary-transform": ArbitraryNets.Transformer(),
    }


@pytest.fixture
def stylizer(nets: dict[str, Any]) -> Stylizer:
    return Stylizer(nets, CATALOGUE)


def photo(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


# ---------------------------------------------------------------- spec parsing


def test_parse_single_id_and_name() -> None:
    assert parse_style_terms("3") == [("3", 1.0)]
    assert parse_style_terms("  blue swirls ") == [("blue swirls", 1.0)]


def test_parse_mix_is_normalised() -> None:
    terms = dict(parse_style_terms("3:0.7,11:0.3"))
    assert terms == pytest.approx({"3": 0.7, "11": 0.3})
    terms = dict(parse_style_terms("3:2, 11:2"))
    assert terms == pytest.approx({"3": 0.5, "11": 0.5})
    assert dict(parse_style_terms("3:1,3:1,4:2")) == pytest.approx({"3": 0.5, "4": 0.5})


@pytest.mark.parametrize("spec", ["", "  ", "3:abc", "3:-1", "3:0,4:0", ":0.5", "3:nan", "3:inf", "3,,4"])
def test_parse_rejects_bad_specs(spec: str) -> None:
    with pytest.raises(InvalidParameter):
        parse_style_terms(spec)


def test_multi_style_weights_convex() -> None:
    weights = multi_style_weights([(3, 0.7), (11, 0.3)])
    assert weights.shape == (NUM_MULTI_STYLES,) and weights.dtype == np.float32
    assert weights[3] == pytest.approx(0.7) and weights[11] == pytest.approx(0.3)
    assert weights.sum() == pytest.approx(1.0)


# ---------------------------------------------------------------- pure helpers


@pytest.mark.parametrize(("h", "w", "expected"), [(333, 517, (336, 520)), (16, 16, (16, 16)), (5, 3, (16, 16)),
                                                  (1, 40, (16, 40))])
def test_pad_to_multiple(h: int, w: int, expected: tuple[int, int]) -> None:
    image = photo(h, w)
    padded = pad_to_multiple(image, 4)
    assert padded.shape[:2] == expected
    np.testing.assert_array_equal(padded[:h, :w], image)


def test_pad_reflects() -> None:
    image = np.arange(6, dtype=np.uint8).reshape(1, 6, 1).repeat(2, axis=0)
    padded = pad_to_multiple(image, 4, minimum=1)
    np.testing.assert_array_equal(padded[0, :, 0], [0, 1, 2, 3, 4, 5, 4, 3])


def test_fit_within() -> None:
    assert fit_within(photo(100, 50), 200).shape == (100, 50, 3)
    assert fit_within(photo(2000, 1000), 1024).shape == (1024, 512, 3)
    assert fit_within(photo(333, 517), 100).shape == (64, 100, 3)


def test_blend_endpoints_and_midpoint() -> None:
    a, b = np.zeros((2, 2, 3), np.uint8), np.full((2, 2, 3), 200, np.uint8)
    np.testing.assert_array_equal(blend(a, b, 1.0), b)
    np.testing.assert_array_equal(blend(a, b, 0.0), a)
    np.testing.assert_array_equal(blend(a, b, 0.25), np.full((2, 2, 3), 50, np.uint8))


def test_keep_colours_takes_luma_from_stylized_and_chroma_from_original() -> None:
    import cv2

    original = photo(32, 32, seed=1)
    stylized = photo(32, 32, seed=2)
    out = keep_colours(stylized, original)
    out_ycc = cv2.cvtColor(out, cv2.COLOR_RGB2YCrCb).astype(int)
    # YCrCb -> RGB -> YCrCb round trip in uint8 is lossy by a few levels where RGB clips.
    assert np.median(np.abs(out_ycc[:, :, 0] - cv2.cvtColor(stylized, cv2.COLOR_RGB2YCrCb)[:, :, 0])) <= 2
    assert np.median(np.abs(out_ycc[:, :, 1:] - cv2.cvtColor(original, cv2.COLOR_RGB2YCrCb)[:, :, 1:])) <= 2


# ---------------------------------------------------------------- the Stylizer


def test_lists_servable_styles_only(stylizer: Stylizer) -> None:
    ids = {s["id"] for s in stylizer.list_styles()}
    assert "missing-model" not in ids
    assert {"0", "25", "my-trained", "arbitrary", *FILTER_IDS} <= ids


def test_arbitrary_hidden_without_its_predictor(nets: dict[str, Any]) -> None:
    del nets["style-arbitrary-predict"]
    ids = {s["id"] for s in Stylizer(nets, CATALOGUE).list_styles()}
    assert "arbitrary" not in ids


@pytest.mark.parametrize("style", ["7", "my-trained", "style number 7", "STYLE NUMBER 7", "3:0.7,11:0.3",
                                   *FILTER_IDS])
def test_output_has_input_size_for_odd_sizes(stylizer: Stylizer, style: str) -> None:
    image = photo(333, 517)
    out = stylizer.stylize(image, style)
    assert out.shape == image.shape and out.dtype == np.uint8


def test_arbitrary_output_size(stylizer: Stylizer) -> None:
    image = photo(333, 517)
    out = stylizer.stylize(image, style_image=photo(90, 300, seed=3))
    assert out.shape == image.shape
    assert stylizer.stylize(image, "arbitrary", style_image=photo(50, 50)).shape == image.shape


def test_network_sees_unit_range_nchw_and_crop_is_exact(stylizer: Stylizer, nets: dict[str, Any]) -> None:
    image = photo(21, 30)
    out = stylizer.stylize(image, "5")
    fed = nets["style-multi26"].feeds[-1]
    assert fed["image"].shape == (1, 3, 24, 32) and fed["image"].dtype == np.float32
    np.testing.assert_allclose(fed["image"][0, :, :21, :30].transpose(1, 2, 0), image / 255.0, atol=1e-6)
    np.testing.assert_array_equal(out, 255 - image)  # the stand-in inverts, so the crop must line up exactly
    np.testing.assert_array_equal(fed["style"], multi_style_weights([(5, 1.0)])[None])


def test_mix_feeds_convex_weights(stylizer: Stylizer, nets: dict[str, Any]) -> None:
    stylizer.stylize(photo(16, 16), "3:0.7,style number 11:0.3")
    style = nets["style-multi26"].feeds[-1]["style"]
    assert style.shape == (1, NUM_MULTI_STYLES)
    assert style[0, 3] == pytest.approx(0.7) and style[0, 11] == pytest.approx(0.3)


def test_strength_zero_returns_input_without_running(stylizer: Stylizer, nets: dict[str, Any]) -> None:
    image = photo(33, 51)
    out = stylizer.stylize(image, "4", strength=0.0)
    np.testing.assert_array_equal(out, image)
    assert nets["style-multi26"].feeds == []


def test_strength_blends(stylizer: Stylizer) -> None:
    image = photo(32, 32)
    out = stylizer.stylize(image, "4", strength=0.5)
    expected = np.rint(image.astype(np.float32) * 0.5 + (255 - image.astype(np.float32)) * 0.5)
    np.testing.assert_array_equal(out, expected.astype(np.uint8))


def test_max_side_processes_smaller_and_returns_full_size(stylizer: Stylizer, nets: dict[str, Any]) -> None:
    image = photo(300, 600)
    out = stylizer.stylize(image, "1", max_side=128)
    assert out.shape == image.shape
    assert nets["style-multi26"].feeds[-1]["image"].shape == (1, 3, 64, 128)


def test_preserve_color_keeps_chroma(stylizer: Stylizer) -> None:
    import cv2

    # A muted orange with luma near mid-grey: the stand-in's inverse keeps luma near mid-grey, so nothing clips.
    image = np.zeros((32, 32, 3), np.uint8) + np.array([160, 120, 95], np.uint8)
    out = stylizer.stylize(image, "2", preserve_color=True)
    chroma_in = cv2.cvtColor(image, cv2.COLOR_RGB2YCrCb)[..., 1:].astype(int)
    chroma_out = cv2.cvtColor(out, cv2.COLOR_RGB2YCrCb)[..., 1:].astype(int)
    assert np.abs(chroma_in - chroma_out).max() <= 3


@pytest.mark.parametrize(("spec", "resolved"), [
    ("3", "3"), (" 3\u3000", "3"), ("Style Number 7", "7"), ("my-trained", "my-trained"),
    ("3:0.7,11:0.3", "3:0.7,11:0.3"), ("style number 3:1, 11:3", "3:0.25,11:0.75"),
    ("3:1,style number 3:1", "3"),  # an id and a name of one style are one style
])
def test_check_style_returns_the_resolved_ids(stylizer: Stylizer, spec: str, resolved: str) -> None:
    assert stylizer.check_style(spec) == resolved


@pytest.mark.parametrize("style", ["26", "no such style", "3:0.5,99:0.5", "missing-model"])
def test_unknown_style(stylizer: Stylizer, style: str) -> None:
    with pytest.raises(UnknownStyle):
        stylizer.stylize(photo(16, 16), style)
    with pytest.raises(UnknownStyle):
        stylizer.check_style(style)


@pytest.mark.parametrize(("kwargs", "error"), [
    ({"style": "3", "strength": 1.5}, InvalidParameter),
    ({"style": "3", "strength": -0.1}, InvalidParameter),
    ({"style": "3", "strength": float("nan")}, InvalidParameter),
    ({"style": "3", "max_side": 8}, InvalidParameter),
    ({"style": "3", "max_side": 100_000}, InvalidParameter),
    ({"style": "3", "max_side": 512.5}, InvalidParameter),
    ({"style": "3:0.5,stylization:0.5"}, InvalidParameter),  # filters cannot be mixed
    ({"style": "3:0.5,my-trained:0.5"}, InvalidParameter),
    ({"style": "arbitrary"}, InvalidParameter),  # needs a style image
    ({"style": None}, InvalidParameter),
    ({"style": "3", "style_image": np.zeros((8, 8, 3), np.uint8)}, InvalidParameter),
])
def test_bad_options(stylizer: Stylizer, kwargs: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        stylizer.stylize(photo(16, 16), **kwargs)


@pytest.mark.parametrize("image", [np.zeros((8, 8), np.uint8), np.zeros((8, 8, 4), np.uint8),
                                   np.zeros((8, 8, 3), np.float32), np.zeros((0, 8, 3), np.uint8)])
def test_bad_image(stylizer: Stylizer, image: np.ndarray) -> None:
    with pytest.raises(InvalidImage):
        stylizer.stylize(image, "3")


def test_tiny_images(stylizer: Stylizer) -> None:
    for shape in [(1, 1, 3), (1, 7, 3), (5, 2, 3)]:
        image = np.full(shape, 77, np.uint8)
        assert stylizer.stylize(image, "0").shape == shape
        assert stylizer.stylize(image, "stylization").shape == shape


def test_prefer_fp16(nets: dict[str, Any]) -> None:
    half = RecordingNet(["image", "style"])
    nets["style-multi26-fp16"] = half
    Stylizer(nets, CATALOGUE, prefer_fp16=True).stylize(photo(16, 16), "0")
    assert len(half.feeds) == 1 and nets["style-multi26"].feeds == []
    Stylizer(nets, CATALOGUE).stylize(photo(16, 16), "0")
    assert len(half.feeds) == 1 and len(nets["style-multi26"].feeds) == 1


def test_peak_bytes_follows_the_processing_size(stylizer: Stylizer) -> None:
    big = stylizer.peak_bytes(4000, 6000, "3", 4096)
    assert stylizer.peak_bytes(4000, 6000, "3", 1024) < big
    assert stylizer.peak_bytes(300, 400, "3", 1024) == stylizer.peak_bytes(300, 400, "3", 4096)  # no upscaling
    assert stylizer.peak_bytes(4000, 6000, "stylization", 4096) < big  # a filter needs less than a network
    assert stylizer.peak_bytes(4000, 6000, "3:0.5,11:0.5", 4096) == big
    with_style_image = stylizer.peak_bytes(4000, 6000, None, 1024, (256, 256))
    assert with_style_image > stylizer.peak_bytes(4000, 6000, None, 1024)


def test_how_to_fit_names_the_largest_max_side_within_the_budget(stylizer: Stylizer) -> None:
    budget = stylizer.peak_bytes(4000, 6000, "3", 2000)
    hint = stylizer.how_to_fit(4000, 6000, "3", 4096, budget)
    side = int(hint.removeprefix("max_side=").split()[0])
    assert stylizer.peak_bytes(4000, 6000, "3", side) <= budget < stylizer.peak_bytes(4000, 6000, "3", side + 1)
    assert stylizer.how_to_fit(4000, 6000, "3", 4096, 1) == "send a smaller image"
