"""What every image endpoint shares: its OpenAPI request body, the images' sizes from their headers, image answers
(decoding is part of each job: app/work.py)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel
from starlette.requests import Request

from app.config import Settings
from app.imaging import DECODE_BYTES_PER_PIXEL, peek_size

RAW_BODY_NOTE = ("A single-image endpoint also takes the raw image as the whole body (Content-Type image/* or "
                 "application/octet-stream, options in the query string). ")


def _form_field(schema: dict[str, Any]) -> dict[str, Any]:
    """An option as a multipart text field: a nullable option is simply left out, a list is comma-separated."""
    schema = dict(schema)
    variants = schema.pop("anyOf", None)
    if variants is not None:
        schema = {**next(v for v in variants if v.get("type") != "null"), **schema}
        if schema.get("default", 0) is None:
            del schema["default"]
    if schema.get("type") == "array":  # a repeated form field would keep only its last value (app/intake.py)
        default = schema.get("default")
        schema = {key: schema[key] for key in ("title", "description") if key in schema}
        schema["type"] = "string"
        if default is not None:
            schema["default"] = ",".join(str(item) for item in default)
    return schema


def image_request_body(
    image_fields: Sequence[str], options: type[BaseModel], optional_fields: Sequence[str] = ()
) -> dict[str, Any]:
    """openapi_extra documenting the ways to send images (the endpoint reads the Request itself).

    Shaped for client generators (tests/api/test_generated_client.py), with what they do with it:
    - multipart/form-data and application/json are documented, inline: openapi-python-client names them after
      the operationId (DetectFilesBody, DetectJsonBody); in components, openapi-typescript would make every
      property with a default required (it spares those under a requestBody), and every option has one.
      Options keep their JSON types in the JSON body; in the form, a list is one comma-separated field.
    - the raw image body (single-image endpoints) is accepted but only described in text: openapi-python-client
      cannot generate an `image/*` body (it skips it with a warning), and one `body` argument covers the two
      documented types.
    - requestBody.required is false on purpose: openapi-python-client 0.29 writes `body: A | B | Unset = UNSET`
      for an operation with several body types whatever `required` says, but imports `Unset` only for an
      optional body, so a required one generates a module that does not import. A request without a body is
      still refused (415 UNSUPPORTED_MEDIA_TYPE), as the description says."""
    all_fields = [*image_fields, *optional_fields]
    option_schema = options.model_json_schema()
    if "$defs" in option_schema:  # its $refs would point into this schema, which the document does not hold
        raise TypeError(f"{options.__name__}: options must be flat (no nested models) to be documented")
    option_properties: dict[str, Any] = option_schema.get("properties", {})
    form = {
        "type": "object",
        "required": list(image_fields),
        "properties": {
            **{field: {"type": "string", "format": "binary", "description": "the image file"} for field in all_fields},
            **{key: _form_field(value) for key, value in option_properties.items()},
        },
        "additionalProperties": False,
    }
    as_json = {
        "type": "object",
        "required": list(image_fields),
        "properties": {
            **{field: {"type": "string", "contentEncoding": "base64",
                       "description": "the image file, base64 (a data: URI prefix is accepted)"}
               for field in all_fields},
            **option_properties,
        },
        "additionalProperties": False,
    }
    raw = RAW_BODY_NOTE if len(image_fields) == 1 else ""
    return {"requestBody": {
        "required": False,
        "description": f"The image{'s' if len(all_fields) > 1 else ''} and options, as a form or as JSON. {raw}"
                       "A body is required: without one the answer is 415.",
        "content": {
            "multipart/form-data": {"schema": form},
            "application/json": {"schema": as_json},
        },
    }}


# Every image answer's schema: raw bytes (a generator that cannot parse the media type hands them back unparsed).
IMAGE_SCHEMA: dict[str, Any] = {"type": "string", "format": "binary"}


def dimensions(data: bytes, settings: Settings) -> tuple[int, int]:
    """(height, width) from the header, for the job's memory estimate; the limits decode() would apply."""
    return peek_size(data, max_pixels=settings.max_pixels, max_bytes=settings.max_upload_bytes)


def decoding_bytes(*sizes: tuple[int, int]) -> int:
    return sum(DECODE_BYTES_PER_PIXEL * height * width for height, width in sizes)


def wants_image(request: Request, annotate: bool) -> bool:
    """True when the client asked for a drawn image rather than JSON."""
    accept = request.headers.get("accept", "")
    return annotate or ("image/png" in accept and "application/json" not in accept)
