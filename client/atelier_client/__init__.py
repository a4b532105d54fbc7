"""Python client for the Atelier inference service: `Client` (sync) and `AsyncClient`, typed results, the API's
error codes as exceptions. Depends on httpx only; PIL and numpy are used when such images are passed.

    from atelier_client import Client
    with Client("http://127.0.0.1:8000", api_key="...") as atelier:
        faces = atelier.detect("photo.jpg").faces
"""

from atelier_client.client import DEFAULT_URL, NO_RETRY, AsyncClient, Client, Retry, __version__
from atelier_client.errors import (
    ERRORS_BY_CODE,
    AtelierError,
    BadRequest,
    ConnectionFailed,
    DeadlineExceeded,
    HttpError,
    ImageTooLarge,
    InferenceFailed,
    InternalError,
    InvalidImage,
    InvalidParameter,
    MemoryBudgetExceeded,
    MethodNotAllowed,
    MissingField,
    NoFaceFound,
    NotAcceptable,
    NotFound,
    NotReady,
    Overloaded,
    PayloadTooLarge,
    RateLimited,
    TimedOut,
    Unauthorized,
    UnknownStyle,
    UnsupportedMediaType,
    UploadTimeout,
)
from atelier_client.models import (
    DetectResult,
    EmbeddedFace,
    EmbedResult,
    Face,
    Health,
    ImageResult,
    Landmarks,
    ModelInfo,
    Readiness,
    Style,
    TensorContract,
    VerifyFaces,
    VerifyResult,
)

__all__ = [
    "DEFAULT_URL", "ERRORS_BY_CODE", "NO_RETRY", "AsyncClient", "AtelierError", "BadRequest", "Client",
    "ConnectionFailed", "DeadlineExceeded", "DetectResult", "EmbedResult", "EmbeddedFace", "Face", "Health",
    "HttpError", "ImageResult", "ImageTooLarge", "InferenceFailed", "InternalError", "InvalidImage",
    "InvalidParameter", "Landmarks", "MemoryBudgetExceeded", "MethodNotAllowed", "MissingField", "ModelInfo",
    "NoFaceFound", "NotAcceptable", "NotFound", "NotReady", "Overloaded", "PayloadTooLarge", "RateLimited",
    "Readiness", "Retry", "Style", "TensorContract", "TimedOut", "Unauthorized", "UnknownStyle",
    "UnsupportedMediaType", "UploadTimeout", "VerifyFaces", "VerifyResult", "__version__",
]
