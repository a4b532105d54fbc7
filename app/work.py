"""The jobs routers hand to the gate: decode the request's image bytes and run one pipeline, nothing else.

This is the seam between HTTP and inference. A router reads and validates the request, then builds a `Work`:
the name of the capability it needs ("detect", "embed", "stylize"), a module-level function and its arguments,
all plain data (image bytes as uploaded, validated options, Settings). `Work.run(pipelines, settings)` decodes
the bytes and calls the pipeline; it does not care where it runs:
- in the plain service (app.main), the gate's thread runs it on the process's own Pipelines;
- on Ray (deploy/ray/atelier_serve.py), the ingress ships the Work (bytes, not decoded arrays) to the
  capability's deployment, whose replica runs it on the Pipelines it loaded itself.
Both modes therefore share every line from decoding to the pipeline's result, and routers stay the only place
that knows HTTP. The functions here take and return picklable values only (no sessions, no closures).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Literal, Protocol, TypeVar

import numpy as np

from app.config import Settings
from app.imaging import DecodedImage, decode_image, encode_image
from app.pipelines.annotate import draw_detections
from app.pipelines.mtcnn import DetectionParams, DetectionResult
from app.pipelines.recognition import EmbeddedFaces, Verification

if TYPE_CHECKING:
    from app.service import Pipelines

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)

Capability = Literal["detect", "embed", "stylize"]
CAPABILITIES: tuple[Capability, ...] = ("detect", "embed", "stylize")


@dataclass(frozen=True)
class Work(Generic[T]):
    """One job: `fn(pipelines, settings, *args)`, run by the deployment that serves `capability`."""

    capability: Capability
    fn: Callable[..., T]  # module-level (pickled by reference)
    args: tuple[Any, ...]

    def run(self, pipelines: Pipelines, settings: Settings) -> T:
        return self.fn(pipelines, settings, *self.args)


class Executor(Protocol):
    """Runs a Work to its result, blocking; called on the gate's thread, under the job's deadline."""

    def __call__(self, work: Work[T]) -> T: ...


def decode(data: bytes, settings: Settings) -> DecodedImage:
    return decode_image(data, max_pixels=settings.max_pixels, max_bytes=settings.max_upload_bytes)


# ---------------------------------------------------------------- detect


@dataclass(frozen=True)
class Detected:
    width: int
    height: int
    result: DetectionResult
    decode_ms: float
    model: str  # "mtcnn (<version>)"
    drawn: tuple[bytes, str] | None  # (PNG bytes, media type) when the client asked for the drawn image


def detect_faces(pipelines: Pipelines, settings: Settings, image_bytes: bytes, params: DetectionParams,
                 draw: bool) -> Detected:
    detector = pipelines.need_detector()
    decode_start = time.perf_counter()
    image = decode(image_bytes, settings)
    decode_ms = (time.perf_counter() - decode_start) * 1000
    result = detector.run(image.rgb, params)
    drawn = None
    if draw:
        canvas = draw_detections(image.rgb, [f.box for f in result.faces], [f.landmarks for f in result.faces])
        drawn = encode_image(canvas, None, "png")
    return Detected(image.width, image.height, result, decode_ms, pipelines.detector_model, drawn)


# ---------------------------------------------------------------- embed, verify


@dataclass(frozen=True)
class Embedded:
    result: EmbeddedFaces
    model: str


@dataclass(frozen=True)
class Verified:
    result: Verification
    model: str


def embed_faces(pipelines: Pipelines, settings: Settings, image_bytes: bytes, params: DetectionParams) -> Embedded:
    recognizer = pipelines.need_recognizer()
    image = decode(image_bytes, settings)
    return Embedded(recognizer.embed_faces(image.rgb, params), recognizer.model_name)


def verify_faces(pipelines: Pipelines, settings: Settings, image_a: bytes, image_b: bytes, params: DetectionParams,
                 mode: str, threshold: float | None) -> Verified:
    recognizer = pipelines.need_recognizer()
    rgb_a = decode(image_a, settings).rgb
    rgb_b = decode(image_b, settings).rgb
    return Verified(recognizer.verify(rgb_a, rgb_b, params, mode=mode, threshold=threshold), recognizer.model_name)


# ---------------------------------------------------------------- stylize


@dataclass(frozen=True)
class Painted:
    body: bytes
    media_type: str
    inference_ms: float


def stylize_image(pipelines: Pipelines, settings: Settings, image_bytes: bytes, style_bytes: bytes | None,
                  style: str | None, strength: float, preserve_color: bool, max_side: int, fmt: str,
                  quality: int) -> Painted:
    stylizer = pipelines.need_stylizer()
    image = decode(image_bytes, settings)
    style_image: np.ndarray | None = decode(style_bytes, settings).rgb if style_bytes is not None else None
    inference_start = time.perf_counter()
    painted = stylizer.stylize(image.rgb, style, style_image=style_image, strength=strength,
                               preserve_color=preserve_color, max_side=max_side)
    inference_ms = (time.perf_counter() - inference_start) * 1000
    body, media_type = encode_image(painted, image.alpha, fmt, quality)
    return Painted(body, media_type, inference_ms)
