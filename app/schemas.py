"""Response models: the JSON contract of every endpoint, as published in the OpenAPI document."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class ErrorDetail(BaseModel):
    code: str = Field(description="stable machine-readable code, listed in the README")
    message: str = Field(description="what was wrong, for people")
    request_id: str = Field(description="this request's id, also sent as the X-Request-ID header; quote it when "
                            "reporting a problem (it finds the request's log lines)")


class ErrorBody(BaseModel):
    error: ErrorDetail


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    ready: bool
    draining: bool = Field(False, description="shutting down: SIGTERM arrived; in-flight requests still finish")
    models: int
    providers: dict[str, str] = Field(description="model id -> execution provider actually running it")


class TensorContract(BaseModel):
    name: str
    dtype: str
    shape: list[int | str]


class ModelInfo(BaseModel):
    id: str
    task: str
    version: str
    sha256: str
    licence: str
    source: list[dict[str, Any]]
    loaded: bool
    active_provider: str | None
    precision: str | None = Field(None, description="float32, float16 or int8: the arithmetic running for this "
                                  "entry; null when it is not loaded (note says why, or which variant serves it)")
    inputs: list[TensorContract]
    outputs: list[TensorContract]
    note: str | None = None


class ModelList(BaseModel):
    models: list[ModelInfo]


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": text}
    for status, text in {
        401: "missing or wrong API key (UNAUTHORIZED)",
        404: "unknown resource (NOT_FOUND, UNKNOWN_STYLE)",
        413: "upload, image or its memory need too large (PAYLOAD_TOO_LARGE, IMAGE_TOO_LARGE, MEMORY_BUDGET)",
        408: "the body did not arrive within the deadline (UPLOAD_TIMEOUT)",
        415: "unsupported Content-Type (UNSUPPORTED_MEDIA_TYPE)",
        429: "past the rate limit; see Retry-After (RATE_LIMITED)",
        422: "bad image or options (INVALID_IMAGE, INVALID_PARAMETER, MISSING_FIELD, NO_FACE)",
        503: "overloaded, past the deadline or not ready (OVERLOADED, TIMEOUT, NOT_READY)",
    }.items()
}
