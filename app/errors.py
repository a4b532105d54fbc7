"""Domain errors. Pipelines and helpers raise these; app/main.py maps them to HTTP in one handler.

Each error carries a stable machine-readable `code` and the HTTP status it maps to. The README's error
table lists every code.
"""

from __future__ import annotations


class AtelierError(Exception):
    """Base of every error the service answers with `{"error": {"code", "message", "request_id"}}`."""

    code: str = "INTERNAL"
    status: int = 500

    def __init__(self, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers or {}


class InvalidImage(AtelierError):
    code, status = "INVALID_IMAGE", 422


class PayloadTooLarge(AtelierError):
    code, status = "PAYLOAD_TOO_LARGE", 413


class ImageTooLarge(AtelierError):
    code, status = "IMAGE_TOO_LARGE", 413


class InvalidParameter(AtelierError):
    code, status = "INVALID_PARAMETER", 422


class MissingField(AtelierError):
    code, status = "MISSING_FIELD", 422


class UnsupportedMediaType(AtelierError):
    code, status = "UNSUPPORTED_MEDIA_TYPE", 415


class NoFaceFound(AtelierError):
    code, status = "NO_FACE", 422


class UnknownStyle(AtelierError):
    code, status = "UNKNOWN_STYLE", 404


class NotFound(AtelierError):
    code, status = "NOT_FOUND", 404


class Overloaded(AtelierError):
    code, status = "OVERLOADED", 503


class DeadlineExceeded(AtelierError):
    code, status = "TIMEOUT", 503


class MemoryBudgetExceeded(AtelierError):
    code, status = "MEMORY_BUDGET", 413


class RateLimited(AtelierError):
    code, status = "RATE_LIMITED", 429


class UploadTimeout(AtelierError):
    code, status = "UPLOAD_TIMEOUT", 408


class InferenceFailed(AtelierError):
    """onnxruntime failed on a run (every request whose inputs were in that run gets one)."""

    code, status = "INFERENCE_FAILED", 500


class NotReady(AtelierError):
    code, status = "NOT_READY", 503


class Unauthorized(AtelierError):
    code, status = "UNAUTHORIZED", 401


class ModelLoadError(RuntimeError):
    """A model file is missing, corrupt or does not match the manifest: start-up stops with this message."""
