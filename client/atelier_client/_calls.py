"""Each endpoint as a `Call`: the request to send and how to read its answer, shared by Client and AsyncClient.

Options left at None are not sent, so the server's defaults (which differ per endpoint, e.g. `min_face_size` 20
for detection and 40 for embedding) stay the server's."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar
from urllib.parse import quote

import httpx

from atelier_client.errors import error_from_response
from atelier_client.images import ImageInput, to_upload
from atelier_client.models import (
    DetectResult,
    EmbedResult,
    Health,
    ImageResult,
    ModelInfo,
    Readiness,
    Style,
    VerifyResult,
)

T = TypeVar("T")
Files = list[tuple[str, tuple[str, bytes, str]]]
StyleFormat = Literal["png", "jpeg", "webp"]


@dataclass(frozen=True)
class Call(Generic[T]):
    method: str
    path: str
    parse: Callable[[httpx.Response], T]
    files: Files = field(default_factory=list)
    data: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    answers: frozenset[int] = frozenset()  # error statuses whose body is an answer, not an error (readyz's 503)

    def result(self, response: httpx.Response) -> T:
        if response.status_code >= 400 and response.status_code not in self.answers:
            raise error_from_response(response)
        return self.parse(response)


def request_id(response: httpx.Response) -> str | None:
    value: str | None = response.headers.get("x-request-id")
    return value


def _json(response: httpx.Response) -> Any:
    return json.loads(response.content)


def _form(**options: Any) -> dict[str, str]:
    """Form fields from options: None is left out, booleans are 'true'/'false', sequences '0.6,0.7,0.7'."""
    fields = {}
    for name, value in options.items():
        if value is None:
            continue
        if isinstance(value, bool):
            fields[name] = "true" if value else "false"
        elif isinstance(value, (list, tuple)):
            fields[name] = ",".join(str(v) for v in value)
        else:
            fields[name] = str(value)
    return fields


def _files(**images: ImageInput | None) -> Files:
    files: Files = []
    for field_name, value in images.items():
        if value is not None:
            filename, content = to_upload(value, field_name)
            files.append((field_name, (filename, content, "application/octet-stream")))
    return files


def _image(response: httpx.Response) -> ImageResult:
    return ImageResult.from_response(response.content, response.headers, request_id(response))


def detect(image: ImageInput, *, min_face_size: int | None = None, thresholds: Sequence[float] | None = None,
           scale_factor: float | None = None, max_faces: int | None = None) -> Call[DetectResult]:
    return Call("POST", "/v1/detect", lambda r: DetectResult.from_json(_json(r), request_id(r)),
                files=_files(image=image),
                data=_form(min_face_size=min_face_size, thresholds=thresholds, scale_factor=scale_factor,
                           max_faces=max_faces),
                headers={"Accept": "application/json"})


def annotate(image: ImageInput, *, min_face_size: int | None = None, thresholds: Sequence[float] | None = None,
             scale_factor: float | None = None, max_faces: int | None = None) -> Call[ImageResult]:
    return Call("POST", "/v1/detect", _image, files=_files(image=image),
                data=_form(min_face_size=min_face_size, thresholds=thresholds, scale_factor=scale_factor,
                           max_faces=max_faces, annotate=True))


def embed(image: ImageInput, *, min_face_size: int | None = None, thresholds: Sequence[float] | None = None,
          scale_factor: float | None = None, max_faces: int | None = None) -> Call[EmbedResult]:
    return Call("POST", "/v1/embed", lambda r: EmbedResult.from_json(_json(r), request_id(r)),
                files=_files(image=image),
                data=_form(min_face_size=min_face_size, thresholds=thresholds, scale_factor=scale_factor,
                           max_faces=max_faces))


def verify(image_a: ImageInput, image_b: ImageInput, *, threshold: float | None = None,
           face: Literal["largest", "best_match"] | None = None, min_face_size: int | None = None,
           thresholds: Sequence[float] | None = None, scale_factor: float | None = None,
           max_faces: int | None = None) -> Call[VerifyResult]:
    return Call("POST", "/v1/verify", lambda r: VerifyResult.from_json(_json(r), request_id(r)),
                files=_files(image_a=image_a, image_b=image_b),
                data=_form(threshold=threshold, face=face, min_face_size=min_face_size, thresholds=thresholds,
                           scale_factor=scale_factor, max_faces=max_faces))


def stylize(image: ImageInput, style: str | int | None = None, *, style_image: ImageInput | None = None,
            strength: float | None = None, preserve_color: bool | None = None, max_side: int | None = None,
            format: StyleFormat | None = None, quality: int | None = None) -> Call[ImageResult]:
    return Call("POST", "/v1/stylize", _image, files=_files(image=image, style_image=style_image),
                data=_form(style=style, strength=strength, preserve_color=preserve_color, max_side=max_side,
                           format=format, quality=quality))


def styles() -> Call[list[Style]]:
    return Call("GET", "/v1/styles", lambda r: [Style.from_json(s) for s in _json(r)["styles"]])


def style_preview(style_id: str | int) -> Call[ImageResult]:
    return Call("GET", f"/v1/styles/{quote(str(style_id), safe='')}/preview", _image)


def models() -> Call[list[ModelInfo]]:
    return Call("GET", "/v1/models", lambda r: [ModelInfo.from_json(m) for m in _json(r)["models"]])


def health() -> Call[Health]:
    return Call("GET", "/healthz", lambda r: Health.from_json(_json(r)))


def ready() -> Call[Readiness]:
    def parse(response: httpx.Response) -> Readiness:
        try:
            return Readiness.from_json(_json(response))
        except (ValueError, KeyError):  # a 503 that is not readyz's body (e.g. a proxy's): an error after all
            raise error_from_response(response) from None

    return Call("GET", "/readyz", parse, answers=frozenset({503}))
