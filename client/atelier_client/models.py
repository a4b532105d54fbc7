"""Typed results: dataclasses mirroring the API's JSON answers (app/schemas.py and the routers' response models).

Field names are the API's, so `dataclasses.asdict(result)` is the answer again (plus `request_id`, the
X-Request-ID header). Keys a newer server adds are ignored, not an error."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

Point = tuple[float, float]


def _point(value: Any) -> Point:
    return float(value[0]), float(value[1])


@dataclass(frozen=True)
class Landmarks:
    """Pixels of the EXIF-corrected image; `left_eye` is the eye on the image's left."""

    left_eye: Point
    right_eye: Point
    nose: Point
    mouth_left: Point
    mouth_right: Point

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Landmarks:
        return cls(**{name: _point(data[name]) for name in
                      ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")})


@dataclass(frozen=True)
class Face:
    box: tuple[float, float, float, float]  # x1, y1, x2, y2 in pixels
    score: float
    landmarks: Landmarks

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Face:
        x1, y1, x2, y2 = (float(v) for v in data["box"])
        return cls(box=(x1, y1, x2, y2), score=float(data["score"]), landmarks=Landmarks.from_json(data["landmarks"]))


@dataclass(frozen=True)
class DetectResult:
    """POST /v1/detect: faces highest score first; no face is an empty list."""

    width: int
    height: int
    faces: list[Face]
    model: str
    timings_ms: dict[str, float]
    request_id: str | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any], request_id: str | None = None) -> DetectResult:
        return cls(width=int(data["width"]), height=int(data["height"]),
                   faces=[Face.from_json(face) for face in data["faces"]], model=str(data["model"]),
                   timings_ms=dict(data.get("timings_ms", {})), request_id=request_id)


@dataclass(frozen=True)
class EmbeddedFace(Face):
    embedding: list[float] = field(default_factory=list)  # (dimensions,) L2-normalised

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> EmbeddedFace:
        face = Face.from_json(data)
        return cls(box=face.box, score=face.score, landmarks=face.landmarks,
                   embedding=[float(v) for v in data["embedding"]])


@dataclass(frozen=True)
class EmbedResult:
    """POST /v1/embed: every face with its embedding."""

    faces: list[EmbeddedFace]
    model: str
    dimensions: int
    timings_ms: dict[str, float]
    request_id: str | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any], request_id: str | None = None) -> EmbedResult:
        return cls(faces=[EmbeddedFace.from_json(face) for face in data["faces"]], model=str(data["model"]),
                   dimensions=int(data["dimensions"]), timings_ms=dict(data.get("timings_ms", {})),
                   request_id=request_id)


@dataclass(frozen=True)
class VerifyFaces:
    a: Face
    b: Face


@dataclass(frozen=True)
class VerifyResult:
    """POST /v1/verify: `verified` is `similarity >= threshold`."""

    similarity: float
    distance: float
    threshold: float
    verified: bool
    faces: VerifyFaces
    model: str
    timings_ms: dict[str, float]
    request_id: str | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any], request_id: str | None = None) -> VerifyResult:
        faces = data["faces"]
        return cls(similarity=float(data["similarity"]), distance=float(data["distance"]),
                   threshold=float(data["threshold"]), verified=bool(data["verified"]),
                   faces=VerifyFaces(a=Face.from_json(faces["a"]), b=Face.from_json(faces["b"])),
                   model=str(data["model"]), timings_ms=dict(data.get("timings_ms", {})), request_id=request_id)


_TIMING = re.compile(r"\s*([\w.-]+)\s*;\s*dur=([0-9.]+)")


@dataclass(frozen=True)
class ImageResult:
    """An image answer: POST /v1/stylize (`style` from X-Style, `timings_ms` from Server-Timing) or a preview."""

    content: bytes = field(repr=False)
    media_type: str
    style: str | None = None  # the style as resolved to catalogue ids, "arbitrary" for a style image
    timings_ms: dict[str, float] = field(default_factory=dict)
    request_id: str | None = None

    @classmethod
    def from_response(cls, content: bytes, headers: Any, request_id: str | None = None) -> ImageResult:
        timings = {m.group(1): float(m.group(2)) for part in headers.get("server-timing", "").split(",")
                   if (m := _TIMING.match(part))}
        return cls(content=content, media_type=headers.get("content-type", "application/octet-stream"),
                   style=headers.get("x-style"), timings_ms=timings, request_id=request_id)

    @property
    def extension(self) -> str:
        """'png', 'jpeg' or 'webp', from the media type."""
        return self.media_type.split(";")[0].split("/")[-1].strip()

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_bytes(self.content)
        return path


@dataclass(frozen=True)
class Style:
    id: str
    name: str
    kind: str  # multi-style, trained, filter, arbitrary
    source: str
    preview_url: str | None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Style:
        return cls(id=str(data["id"]), name=str(data["name"]), kind=str(data["kind"]), source=str(data["source"]),
                   preview_url=data.get("preview_url"))


@dataclass(frozen=True)
class TensorContract:
    name: str
    dtype: str
    shape: list[int | str]

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TensorContract:
        return cls(name=str(data["name"]), dtype=str(data["dtype"]), shape=list(data["shape"]))


@dataclass(frozen=True)
class ModelInfo:
    id: str
    task: str
    version: str
    sha256: str
    licence: str
    source: list[dict[str, Any]]
    loaded: bool
    active_provider: str | None
    precision: str | None
    inputs: list[TensorContract]
    outputs: list[TensorContract]
    note: str | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ModelInfo:
        return cls(id=str(data["id"]), task=str(data["task"]), version=str(data["version"]),
                   sha256=str(data["sha256"]), licence=str(data["licence"]), source=list(data.get("source", [])),
                   loaded=bool(data["loaded"]), active_provider=data.get("active_provider"),
                   precision=data.get("precision"),
                   inputs=[TensorContract.from_json(t) for t in data.get("inputs", [])],
                   outputs=[TensorContract.from_json(t) for t in data.get("outputs", [])], note=data.get("note"))


@dataclass(frozen=True)
class Health:
    status: str

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Health:
        return cls(status=str(data["status"]))


@dataclass(frozen=True)
class Readiness:
    """GET /readyz. A 503 (starting or draining) is an answer here, `ready=False`, not an exception."""

    ready: bool
    draining: bool
    models: int
    providers: dict[str, str]

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Readiness:
        return cls(ready=bool(data["ready"]), draining=bool(data.get("draining", False)), models=int(data["models"]),
                   providers=dict(data.get("providers", {})))
