"""POST /v1/detect: MTCNN face detection."""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field, field_validator

from app.deps import AdmissionDep, ServiceDep
from app.intake import parse_options, read_image_request
from app.pipelines.mtcnn import MIN_FACE_SIZE_FLOOR, SCALE_FACTOR_RANGE, DetectionParams, detection_peak_bytes
from app.routers.common import IMAGE_SCHEMA, decoding_bytes, dimensions, image_request_body, wants_image
from app.schemas import ERROR_RESPONSES
from app.work import Work, detect_faces

router = APIRouter(tags=["faces"])

Probability = Annotated[float, Field(ge=0.0, le=1.0)]
# The pipeline owns the defaults and bounds (DetectionParams validates every caller, HTTP or not); the options
# here repeat them from there only so that a bad value is refused before the body's image is decoded and the
# OpenAPI document shows them.
DETECTION_DEFAULTS = DetectionParams()


def split_numbers(value: Any) -> Any:
    """Form fields and query strings carry lists as '0.6,0.7,0.7'; JSON carries real lists."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",")]
    return value


class DetectOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    min_face_size: int = Field(DETECTION_DEFAULTS.min_face_size, ge=MIN_FACE_SIZE_FLOOR,
                               description=f"smallest face to find, in pixels (P-Net's cell is {MIN_FACE_SIZE_FLOOR})")
    thresholds: tuple[Probability, Probability, Probability] = Field(
        DETECTION_DEFAULTS.thresholds,
        description="P-Net, R-Net, O-Net face probability thresholds ('0.6,0.7,0.7' in forms)")
    scale_factor: float = Field(DETECTION_DEFAULTS.scale_factor, ge=SCALE_FACTOR_RANGE[0], le=SCALE_FACTOR_RANGE[1],
                                description="image pyramid step")
    max_faces: int | None = Field(None, ge=1, description="keep only the largest faces")
    annotate: bool = Field(False, description="answer with the image (PNG) and the detections drawn on it")

    _split = field_validator("thresholds", mode="before")(split_numbers)

    def params(self) -> DetectionParams:
        return DetectionParams(min_face_size=self.min_face_size, thresholds=self.thresholds,
                               scale_factor=self.scale_factor, max_faces=self.max_faces)


class Landmarks(BaseModel):
    left_eye: tuple[float, float]
    right_eye: tuple[float, float]
    nose: tuple[float, float]
    mouth_left: tuple[float, float]
    mouth_right: tuple[float, float]


class FaceOut(BaseModel):
    box: tuple[float, float, float, float] = Field(description="x1, y1, x2, y2 in pixels of the EXIF-corrected image")
    score: float
    landmarks: Landmarks


class DetectResponse(BaseModel):
    width: int
    height: int
    faces: list[FaceOut] = Field(description="highest score first; empty when there is no face")
    model: str
    timings_ms: dict[str, float]


@router.post(
    "/v1/detect",
    response_model=DetectResponse,
    summary="Find faces: boxes, scores and five landmarks",
    responses={**ERROR_RESPONSES, 200: {
        "description": "the detections as JSON; with annotate=true (or Accept: image/png) the image as PNG, the "
        "detections drawn on it and their count in X-Faces",
        "content": {"image/png": {"schema": IMAGE_SCHEMA}}}},
    openapi_extra=image_request_body(["image"], DetectOptions),
)
async def detect(request: Request, service: ServiceDep, admission: AdmissionDep) -> Any:
    started = time.perf_counter()
    upload = await admission.read(read_image_request(request, ["image"], service.settings))
    options = parse_options(DetectOptions, upload.options)
    params = options.params()
    service.require("detect")
    draw = wants_image(request, options.annotate)
    work = Work("detect", detect_faces, (upload.files["image"], params, draw))

    height, width = dimensions(upload.files["image"], service.settings)
    need = decoding_bytes((height, width)) + detection_peak_bytes(height, width, params)
    detected = await admission.run(
        service.job(work), need, "send a smaller image, or raise min_face_size (the detection's first level is the "
        "image scaled by 12 / min_face_size)")
    result = detected.result
    if detected.drawn is not None:
        body, media_type = detected.drawn
        return Response(body, media_type=media_type, headers={"X-Faces": str(len(result.faces))})
    timings = {"decode": round(detected.decode_ms, 3), **result.timings_ms,
               "total": round((time.perf_counter() - started) * 1000, 3)}
    return DetectResponse(
        width=detected.width,
        height=detected.height,
        faces=[FaceOut.model_validate(face.as_dict()) for face in result.faces],
        model=detected.model,
        timings_ms=timings,
    )
