"""Style transfer: GET /v1/styles, GET /v1/styles/{id}/preview, POST /v1/stylize."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Literal

from fastapi import APIRouter, Request, Response
from fastapi.responses import FileResponse
from pydantic import BaseModel, ConfigDict, Field

from app.deps import AdmissionDep, ServiceDep
from app.errors import NotFound, UnknownStyle
from app.imaging import check_encodable
from app.intake import parse_options, read_image_request
from app.pipelines.style import DEFAULT_MAX_SIDE, MAX_MAX_SIDE, MIN_MAX_SIDE
from app.routers.common import IMAGE_SCHEMA, dimensions, image_request_body
from app.schemas import ERROR_RESPONSES
from app.work import Work, stylize_image

router = APIRouter(tags=["style transfer"])

PREVIEW_MEDIA_TYPES = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png", ".webp": "image/webp"}


class StyleInfo(BaseModel):
    id: str
    name: str
    kind: Literal["multi-style", "trained", "filter", "arbitrary"]
    source: str
    preview_url: str | None


class StyleList(BaseModel):
    styles: list[StyleInfo]


class StylizeOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    style: str | None = Field(None, description="a style id or name, or a mix of multi-style ids such as '3:0.7,11:0.3'"
                              "; omit it (or say 'arbitrary') when sending style_image")
    strength: float = Field(1.0, ge=0.0, le=1.0, description="0 returns the original, 1 the full style")
    preserve_color: bool = Field(False, description="keep the original colours; transfer only luminance")
    max_side: int = Field(DEFAULT_MAX_SIDE, ge=MIN_MAX_SIDE, le=MAX_MAX_SIDE,
                          description="processing resolution cap (longer side); the output keeps the input's size")
    format: Literal["png", "jpeg", "webp"] = "png"
    quality: int = Field(90, ge=1, le=100, description="JPEG/WebP quality")


def _style_info(style: dict[str, Any]) -> StyleInfo:
    preview = f"/v1/styles/{style['id']}/preview" if style.get("preview") else None
    return StyleInfo(id=str(style["id"]), name=str(style["name"]), kind=style["kind"], source=str(style["source"]),
                     preview_url=preview)


@router.get("/v1/styles", response_model=StyleList, summary="Every style: networks, trained, filters, arbitrary")
async def list_styles(service: ServiceDep) -> StyleList:
    return StyleList(styles=[_style_info(s) for s in service.stylizer.list_styles()])


@router.get(
    "/v1/styles/{style_id}/preview",
    summary="A preview of the style applied to a public-domain photo",
    response_class=FileResponse,
    responses={200: {"content": {"image/jpeg": {"schema": IMAGE_SCHEMA}}}, 404: ERROR_RESPONSES[404]},
)
async def style_preview(style_id: str, service: ServiceDep) -> FileResponse:
    style = service.stylizer.resolve(style_id)
    if not style.get("preview"):
        raise NotFound(f"style {style_id!r} has no preview")
    models_dir = Path(service.settings.models_dir).resolve()
    path = (models_dir / str(style["preview"])).resolve()
    if models_dir not in path.parents or not path.is_file():
        raise NotFound(f"the preview of style {style_id!r} is missing")
    return FileResponse(path, media_type=PREVIEW_MEDIA_TYPES.get(path.suffix.lower(), "application/octet-stream"))


@router.post(
    "/v1/stylize",
    summary="Paint a photo in a style (or in the style of a second image)",
    response_class=Response,
    responses={**ERROR_RESPONSES, 200: {"content": {media: {"schema": IMAGE_SCHEMA}
                                                    for media in ("image/png", "image/jpeg", "image/webp")},
                                        "description": "the stylised image, the input's width and height"}},
    openapi_extra=image_request_body(["image"], StylizeOptions, optional_fields=["style_image"]),
)
async def stylize(request: Request, service: ServiceDep, admission: AdmissionDep) -> Response:
    started = time.perf_counter()
    upload = await admission.read(read_image_request(request, ["image"], service.settings,
                                                     optional_fields=["style_image"]))
    options = parse_options(StylizeOptions, upload.options)
    stylizer = service.stylizer
    style_bytes = upload.files.get("style_image")
    if style_bytes is None and options.style is None:
        raise UnknownStyle("no style given: send `style` (GET /v1/styles lists them) or a `style_image`")
    # An unknown style answers 404 before any decoding; the header echoes the resolved ids, never raw input.
    style_label = stylizer.check_style(options.style) if style_bytes is None and options.style is not None else (
        "arbitrary")

    height, width = dimensions(upload.files["image"], service.settings)
    check_encodable(width, height, options.format)  # before the work, not after it
    style_size = dimensions(style_bytes, service.settings) if style_bytes is not None else None
    spec = None if style_bytes is not None else options.style
    need = stylizer.peak_bytes(height, width, spec, options.max_side, style_size)
    budget = service.gate.memory
    too_large = stylizer.how_to_fit(height, width, spec, options.max_side, budget.total, style_size) if (
        budget is not None) else ""

    work = Work("stylize", stylize_image, (upload.files["image"], style_bytes, options.style, options.strength,
                                           options.preserve_color, options.max_side, options.format, options.quality))
    painted = await admission.run(service.job(work), need, too_large)
    body, media_type, inference_ms = painted.body, painted.media_type, painted.inference_ms
    total_ms = (time.perf_counter() - started) * 1000
    return Response(body, media_type=media_type, headers={
        "X-Style": style_label,
        "Server-Timing": f"inference;dur={inference_ms:.1f}, total;dur={total_ms:.1f}",
    })
