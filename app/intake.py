"""Reading requests: images as multipart file fields, a JSON body with base64 strings, or a raw image body.

Bodies are read with a byte cap before any parsing, so an oversized upload costs at most the cap.
Options come from the query string plus the form fields / JSON keys; routers validate them with pydantic.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartParser
from starlette.requests import Request

from app.config import Settings
from app.errors import InvalidImage, InvalidParameter, MissingField, PayloadTooLarge, UnsupportedMediaType
from app.imaging import decode_base64

ModelT = TypeVar("ModelT", bound=BaseModel)

_FORM_OVERHEAD_BYTES = 64 * 1024  # multipart boundaries, headers and option fields
_MAX_FORM_FIELDS = 64


@dataclass
class ImageRequest:
    files: dict[str, bytes]  # field name -> encoded image bytes, as uploaded
    options: dict[str, Any] = field(default_factory=dict)


async def _read_capped(request: Request, cap: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > cap:
                raise PayloadTooLarge(f"request body is {declared} bytes; the limit is {cap}")
        except ValueError:
            raise InvalidParameter("malformed Content-Length header") from None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > cap:
            raise PayloadTooLarge(f"request body exceeds the limit of {cap} bytes")
        chunks.append(chunk)
    body = b"".join(chunks)
    request._body = body  # noqa: SLF001 - lets Starlette's form()/json() parse what we already read
    return body


def _forget_body(request: Request) -> None:
    """Drop the Request's reference to the raw body once it is parsed: the decoded fields are all that is
    needed from here on, and the Request lives until the response is sent."""
    if hasattr(request, "_body"):
        del request._body  # noqa: SLF001


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


async def read_image_request(
    request: Request, image_fields: Sequence[str], settings: Settings, optional_fields: Sequence[str] = ()
) -> ImageRequest:
    """Collect the named images and every option. Missing required images raise MissingField naming them."""
    required = list(image_fields)
    image_fields = [*required, *optional_fields]
    per_image = settings.max_upload_bytes
    media_type = _media_type(request)
    options: dict[str, Any] = dict(request.query_params)
    files: dict[str, bytes] = {}
    unexpected: list[str] = []  # file fields under names this endpoint does not take

    if media_type == "multipart/form-data":
        await _read_capped(request, per_image * len(image_fields) + _FORM_OVERHEAD_BYTES)
        parser = MultiPartParser(request.headers, request.stream(), max_files=len(image_fields) + 4,
                                 max_fields=_MAX_FORM_FIELDS, max_part_size=per_image)
        # Uploads stay in memory, never spooled to a temporary file on disk (no image touches the disk); the
        # byte cap above bounds them. Set on this parser only, not on Starlette's class for the whole process.
        parser.spool_max_size = per_image + 1
        try:
            form = await parser.parse()
        except Exception as exc:  # Starlette raises its own MultiPartException / HTTPException
            detail = getattr(exc, "detail", None) or getattr(exc, "message", None) or str(exc)
            if "size" in str(detail).lower() or "too large" in str(detail).lower():
                raise PayloadTooLarge(f"a multipart part exceeds {per_image} bytes") from None
            raise InvalidParameter(f"malformed multipart body: {detail}") from None
        for key, value in form.multi_items():
            if isinstance(value, UploadFile):
                if key in image_fields:
                    data = await value.read()
                    if len(data) > per_image:
                        raise PayloadTooLarge(f"field '{key}' is larger than {per_image} bytes")
                    files[key] = data
                else:
                    unexpected.append(key)
            elif key in image_fields:
                raise InvalidImage(f"field '{key}' must be a file upload, not a text value")
            else:
                options[key] = value
        await form.close()
        _forget_body(request)
    elif media_type == "application/json":
        body = await _read_capped(request, (per_image * 4 // 3 + 4) * len(image_fields) + _FORM_OVERHEAD_BYTES)
        try:
            payload = json.loads(body) if body else None
        except ValueError:
            raise InvalidParameter("the body is not valid JSON") from None
        finally:
            del body
            _forget_body(request)
        if not isinstance(payload, dict):
            raise InvalidParameter("the JSON body must be an object")
        for key, value in payload.items():
            if key in image_fields:
                files[key] = decode_base64(value, key, per_image)
            else:
                options[key] = value
    elif media_type.startswith("image/") or media_type == "application/octet-stream":
        if len(required) != 1:
            raise UnsupportedMediaType("this endpoint takes several images: send multipart/form-data or JSON")
        files[image_fields[0]] = await _read_capped(request, per_image)
        _forget_body(request)  # the bytes live on in `files` only
    else:
        raise UnsupportedMediaType(
            f"unsupported Content-Type '{media_type or 'none'}': send multipart/form-data, application/json"
            + (" or a raw image body" if len(required) == 1 else "")
        )

    missing = [name for name in required if name not in files]
    if missing:
        hint = f" (got file field(s) {', '.join(repr(u) for u in unexpected)})" if unexpected else ""
        raise MissingField(f"missing image field(s): {', '.join(repr(m) for m in missing)}{hint}")
    if unexpected:
        names = ", ".join(repr(u) for u in unexpected)
        raise InvalidParameter(f"unexpected file field(s) {names}; expected {', '.join(repr(f) for f in image_fields)}")
    return ImageRequest(files=files, options=options)


def parse_options(model: type[ModelT], options: dict[str, Any]) -> ModelT:
    """Validate raw options (strings from forms and queries, JSON values) into `model`."""
    try:
        return model.model_validate(options)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in error['loc']) or 'body'}: {error['msg']}" for error in exc.errors()
        )
        raise InvalidParameter(problems) from None
