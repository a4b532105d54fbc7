"""Face verification: POST /v1/embed and POST /v1/verify. Nothing about the faces is stored or logged."""

from __future__ import annotations

import time
from typing import Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from app.deps import AdmissionDep, ServiceDep
from app.intake import parse_options, read_image_request
from app.pipelines.mtcnn import MIN_FACE_SIZE_FLOOR
from app.pipelines.recognition import FaceRecognizer
from app.pipelines.verify import EMBEDDING_SIZE, VERIFY_MIN_FACE_SIZE
from app.routers.common import decoding_bytes, dimensions, image_request_body
from app.routers.detect import DetectOptions, FaceOut
from app.schemas import ERROR_RESPONSES
from app.work import Work, embed_faces, verify_faces

TOO_LARGE_HINT = "send smaller images, or raise min_face_size"

router = APIRouter(tags=["faces"])


class EmbedOptions(DetectOptions):
    min_face_size: int = Field(VERIFY_MIN_FACE_SIZE, ge=MIN_FACE_SIZE_FLOOR,
                               description="smallest face to embed, in pixels (smaller faces embed unreliably)")
    annotate: bool = Field(False, exclude=True, description="not used by this endpoint")


class VerifyOptions(EmbedOptions):
    threshold: float | None = Field(None, ge=-1.0, le=1.0,
                                    description="cosine similarity at or above which two faces are the same person; "
                                    "default derived from dlib's L2 0.6 operating point")
    face: Literal["largest", "best_match"] = Field(
        "largest", description="compare the largest face of each image, or the most similar pair among all faces")


class EmbeddedFace(FaceOut):
    embedding: list[float] = Field(description="L2-normalised descriptor")


class EmbedResponse(BaseModel):
    faces: list[EmbeddedFace]
    model: str
    dimensions: int
    timings_ms: dict[str, float]


class VerifyFaces(BaseModel):
    a: FaceOut
    b: FaceOut


class VerifyResponse(BaseModel):
    similarity: float = Field(description="cosine similarity of the two unit embeddings")
    distance: float = Field(description="euclidean distance of the two unit embeddings")
    threshold: float
    verified: bool = Field(description="similarity >= threshold")
    faces: VerifyFaces
    model: str
    timings_ms: dict[str, float]


@router.post(
    "/v1/embed",
    response_model=EmbedResponse,
    summary="Detect faces and return an L2-normalised embedding for each",
    responses=ERROR_RESPONSES,
    openapi_extra=image_request_body(["image"], EmbedOptions),
)
async def embed(request: Request, service: ServiceDep, admission: AdmissionDep) -> EmbedResponse:
    started = time.perf_counter()
    upload = await admission.read(read_image_request(request, ["image"], service.settings))
    options = parse_options(EmbedOptions, upload.options)
    service.require("embed")
    work = Work("embed", embed_faces, (upload.files["image"], options.params()))

    size = dimensions(upload.files["image"], service.settings)
    need = decoding_bytes(size) + FaceRecognizer.peak_bytes([size], options.params())
    embedded = await admission.run(service.job(work), need, TOO_LARGE_HINT)
    result = embedded.result
    faces = [EmbeddedFace.model_validate({**face.as_dict(), "embedding": [float(v) for v in vector]})
             for face, vector in zip(result.faces, result.embeddings, strict=True)]
    return EmbedResponse(faces=faces, model=embedded.model, dimensions=EMBEDDING_SIZE,
                         timings_ms={**result.timings_ms, "total": round((time.perf_counter() - started) * 1000, 3)})


@router.post(
    "/v1/verify",
    response_model=VerifyResponse,
    summary="Are the faces in two images the same person?",
    responses=ERROR_RESPONSES,
    openapi_extra=image_request_body(["image_a", "image_b"], VerifyOptions),
)
async def verify(request: Request, service: ServiceDep, admission: AdmissionDep) -> VerifyResponse:
    started = time.perf_counter()
    upload = await admission.read(read_image_request(request, ["image_a", "image_b"],
                                                     service.settings))
    options = parse_options(VerifyOptions, upload.options)
    service.require("embed")
    work = Work("embed", verify_faces, (upload.files["image_a"], upload.files["image_b"], options.params(),
                                        options.face, options.threshold))

    sizes = [dimensions(upload.files[name], service.settings) for name in ("image_a", "image_b")]
    need = decoding_bytes(*sizes) + FaceRecognizer.peak_bytes(sizes, options.params())
    verified = await admission.run(service.job(work), need, TOO_LARGE_HINT)
    result = verified.result
    return VerifyResponse(
        similarity=result.similarity,
        distance=result.distance,
        threshold=result.threshold,
        verified=result.verified,
        faces=VerifyFaces(a=FaceOut.model_validate(result.face_a.as_dict()),
                          b=FaceOut.model_validate(result.face_b.as_dict())),
        model=verified.model,
        timings_ms={**result.timings_ms, "total": round((time.perf_counter() - started) * 1000, 3)},
    )
