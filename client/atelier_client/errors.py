"""The API's error codes as exceptions: one class per code of the README's error table, all under AtelierError.

Every error body is `{"error": {"code", "message", "request_id"}}`; `error_from_response` turns one into the class
of its code (an unknown code, or a body that is not Atelier's, e.g. a proxy's 502 page, gives AtelierError itself
with code HTTP_ERROR)."""

from __future__ import annotations

import json
from typing import Any

import httpx


class AtelierError(Exception):
    """Base of every error this client raises. `code` is the API's stable code; `status` the HTTP status (0 when
    no answer came: ConnectionFailed); `request_id` the server's id of the request (quote it when reporting)."""

    code: str = "HTTP_ERROR"
    status: int = 0

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None,
                 request_id: str | None = None, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        self.request_id = request_id
        self.retry_after = retry_after

    def __str__(self) -> str:
        where = f", request {self.request_id}" if self.request_id else ""
        return f"{self.code} ({self.status}{where}): {self.message}"


class ConnectionFailed(AtelierError):
    """No answer: the connection could not be made or broke before the response (after the client's retries)."""

    code, status = "CONNECTION_FAILED", 0


class TimedOut(AtelierError):
    """No answer within the client's timeout (a read timeout is not retried: the server may still be working)."""

    code, status = "CLIENT_TIMEOUT", 0


class BadRequest(AtelierError):
    code, status = "BAD_REQUEST", 400


class Unauthorized(AtelierError):
    code, status = "UNAUTHORIZED", 401


class NotFound(AtelierError):
    code, status = "NOT_FOUND", 404


class UnknownStyle(AtelierError):
    code, status = "UNKNOWN_STYLE", 404


class MethodNotAllowed(AtelierError):
    code, status = "METHOD_NOT_ALLOWED", 405


class NotAcceptable(AtelierError):
    code, status = "NOT_ACCEPTABLE", 406


class UploadTimeout(AtelierError):
    code, status = "UPLOAD_TIMEOUT", 408


class PayloadTooLarge(AtelierError):
    code, status = "PAYLOAD_TOO_LARGE", 413


class ImageTooLarge(AtelierError):
    code, status = "IMAGE_TOO_LARGE", 413


class MemoryBudgetExceeded(AtelierError):
    code, status = "MEMORY_BUDGET", 413


class UnsupportedMediaType(AtelierError):
    code, status = "UNSUPPORTED_MEDIA_TYPE", 415


class InvalidImage(AtelierError):
    code, status = "INVALID_IMAGE", 422


class MissingField(AtelierError):
    code, status = "MISSING_FIELD", 422


class InvalidParameter(AtelierError):
    code, status = "INVALID_PARAMETER", 422


class NoFaceFound(AtelierError):
    code, status = "NO_FACE", 422


class RateLimited(AtelierError):
    code, status = "RATE_LIMITED", 429


class HttpError(AtelierError):
    """Any other status the server's HTTP layer raises (the README's `HTTP_ERROR`)."""

    code, status = "HTTP_ERROR", 0


class InferenceFailed(AtelierError):
    code, status = "INFERENCE_FAILED", 500


class InternalError(AtelierError):
    code, status = "INTERNAL", 500


class Overloaded(AtelierError):
    code, status = "OVERLOADED", 503


class DeadlineExceeded(AtelierError):
    code, status = "TIMEOUT", 503


class NotReady(AtelierError):
    code, status = "NOT_READY", 503


ERRORS_BY_CODE: dict[str, type[AtelierError]] = {
    cls.code: cls for cls in (
        BadRequest, Unauthorized, NotFound, UnknownStyle, MethodNotAllowed, NotAcceptable, UploadTimeout,
        PayloadTooLarge, ImageTooLarge, MemoryBudgetExceeded, UnsupportedMediaType, InvalidImage, MissingField,
        InvalidParameter, NoFaceFound, RateLimited, HttpError, InferenceFailed, InternalError, Overloaded,
        DeadlineExceeded, NotReady,
    )
}


def retry_after_seconds(response: httpx.Response) -> float | None:
    """Retry-After in seconds (Atelier sends delta-seconds; an HTTP date, which it never sends, reads as None)."""
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def error_from_response(response: httpx.Response) -> AtelierError:
    """The typed exception for an error response (status >= 400)."""
    detail: dict[str, Any] = {}
    try:
        body = json.loads(response.content)
        if isinstance(body, dict) and isinstance(body.get("error"), dict):
            detail = body["error"]
    except ValueError:
        pass
    code = str(detail.get("code") or "HTTP_ERROR")
    message = str(detail.get("message") or response.text[:500] or response.reason_phrase)
    request_id = detail.get("request_id") or response.headers.get("x-request-id")
    cls = ERRORS_BY_CODE.get(code, AtelierError)
    return cls(message, code=code, status=response.status_code, request_id=str(request_id) if request_id else None,
               retry_after=retry_after_seconds(response))
