"""What every image endpoint shares: its OpenAPI request body, the images' sizes from their headers, image answers
(decoding is part of each job: app/work.py)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel
from starlette.requests import Request

from app.config import Settings
from app.imaging import DECODE_BYTES_PER_PIXEL, peek_size


def image_request_body(
    image_fields: Sequence[str], options: type[BaseModel], optional_fields: Sequence[str] = ()
) -> dict[str, Any]:
    """openapi_extra documenting the three ways to send images (the endpoint reads the Request itself)."""
    all_fields = [*image_fields, *optional_fields]
    option_schema = options.model_json_schema()
    option_properties = option_schema.get("properties", {})
    defs = option_schema.get("$defs", {})
    multipart = {
        "type": "object",
        "required": list(image_fields),
        "properties": {
            **{name: {"type": "string", "format": "binary"} for name in all_fields},
            **option_properties,
        },
    }
    json_body = {
        "type": "object",
        "required": list(image_fields),
        "properties": {
            **{name: {"type": "string", "contentEncoding": "base64",
                      "description": "the image file, base64 (a data: URI prefix is accepted)"}
               for name in all_fields},
            **option_properties,
        },
    }
    content: dict[str, Any] = {
        "multipart/form-data": {"schema": multipart},
        "application/json": {"schema": json_body},
    }
    if len(image_fields) == 1:
        content["image/*"] = {"schema": {"type": "string", "format": "binary"}}
    extra: dict[str, Any] = {"requestBody": {"required": True, "content": content}}
    if defs:
        extra["components"] = {"schemas": defs}
    return extra


def dimensions(data: bytes, settings: Settings) -> tuple[int, int]:
    """(height, width) from the header, for the job's memory estimate; the limits decode() would apply."""
    return peek_size(data, max_pixels=settings.max_pixels, max_bytes=settings.max_upload_bytes)


def decoding_bytes(*sizes: tuple[int, int]) -> int:
    return sum(DECODE_BYTES_PER_PIXEL * height * width for height, width in sizes)


def wants_image(request: Request, annotate: bool) -> bool:
    """True when the client asked for a drawn image rather than JSON."""
    accept = request.headers.get("accept", "")
    return annotate or ("image/png" in accept and "application/json" not in accept)
