"""Client (sync) and AsyncClient: every Atelier endpoint, typed results, typed errors, bounded retries.

Retrying is safe for every call here: Atelier's POSTs are pure functions of their inputs (nothing is stored,
no state changes), so sending one twice gives the same answer twice. The client retries, up to
`Retry.attempts` in all:
- 503 and 429 answers that carry `Retry-After` (503 OVERLOADED: the gate and its queue are full; 429
  RATE_LIMITED), after the seconds it names, unless that is longer than `Retry.max_retry_after_s`;
- connection errors (refused, reset, dropped before the answer, a connect timeout), after an exponential backoff
  with jitter.
A read timeout is not retried: the server may still be working on it, and a second copy would double its load.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal, TypeVar

import httpx

from atelier_client import _calls as calls
from atelier_client.errors import AtelierError, ConnectionFailed, TimedOut, retry_after_seconds
from atelier_client.images import ImageInput
from atelier_client.models import (
    DetectResult,
    EmbedResult,
    Health,
    ImageResult,
    ModelInfo,
    Readiness,
    Style,
    VerifyResult,
)

__version__ = "0.1.0"
DEFAULT_URL = "http://127.0.0.1:8000"
# The client's own environment variables. The server's Settings (env prefix ATELIER_, extra="ignore") has no
# fields `url` or `api_key` (its keys are ATELIER_API_KEYS), so these never change the server's configuration.
URL_ENV, API_KEY_ENV = "ATELIER_URL", "ATELIER_API_KEY"
# Connection errors worth another attempt: no answer came, or the connection broke before it did.
RETRIED_TRANSPORT_ERRORS = (httpx.NetworkError, httpx.RemoteProtocolError, httpx.ConnectTimeout)
T = TypeVar("T")


@dataclass(frozen=True)
class Retry:
    attempts: int = 4  # in all, the first included; 1 = never retry
    backoff_s: float = 0.25  # first wait after a connection error, doubling each time
    max_backoff_s: float = 8.0
    max_retry_after_s: float = 30.0  # a longer Retry-After is raised at once instead of waited for
    statuses: frozenset[int] = frozenset({429, 503})  # retried only when they carry Retry-After

    def wait_for_answer(self, attempt: int, response: httpx.Response) -> float | None:
        """Seconds to wait before attempt `attempt + 1` after this answer, or None to take the answer."""
        if attempt >= self.attempts or response.status_code not in self.statuses:
            return None
        seconds = retry_after_seconds(response)
        return seconds if seconds is not None and seconds <= self.max_retry_after_s else None

    def wait_for_error(self, attempt: int, error: Exception) -> float | None:
        if attempt >= self.attempts or not isinstance(error, RETRIED_TRANSPORT_ERRORS):
            return None
        ceiling = min(self.max_backoff_s, self.backoff_s * 2.0 ** (attempt - 1))
        return ceiling / 2 + random.uniform(0, ceiling / 2)  # jitter: clients that failed together spread out


NO_RETRY = Retry(attempts=1)


def _transport_error(error: httpx.TransportError, url: str) -> AtelierError:
    if isinstance(error, httpx.TimeoutException) and not isinstance(error, httpx.ConnectTimeout):
        return TimedOut(f"{url}: no answer in time ({type(error).__name__})")
    return ConnectionFailed(f"{url}: {type(error).__name__}: {error}")


class _Base:
    def __init__(self, base_url: str | None, api_key: str | None, timeout: float | httpx.Timeout,
                 retry: Retry, headers: dict[str, str] | None) -> None:
        self.base_url = (base_url or os.environ.get(URL_ENV) or DEFAULT_URL).rstrip("/")
        key = api_key if api_key is not None else os.environ.get(API_KEY_ENV)
        self.retry = retry
        self.timeout = timeout
        self.headers = {"User-Agent": f"atelier-client/{__version__}", **(headers or {})}
        if key:
            self.headers["X-API-Key"] = key

    def _request(self, call: calls.Call[Any]) -> dict[str, Any]:
        return {"method": call.method, "url": self.base_url + call.path, "files": call.files or None,
                "data": call.data or None, "headers": {**self.headers, **call.headers}}


class Client(_Base):
    """A synchronous client. Use it as a context manager, or call close().

    base_url: default $ATELIER_URL, else http://127.0.0.1:8000. api_key: default $ATELIER_API_KEY, sent as
    X-API-Key. http_client: an httpx.Client to send with (e.g. starlette's TestClient); it is not closed here.
    """

    def __init__(self, base_url: str | None = None, *, api_key: str | None = None,
                 timeout: float | httpx.Timeout = 60.0, retry: Retry = Retry(),
                 headers: dict[str, str] | None = None, transport: httpx.BaseTransport | None = None,
                 http_client: httpx.Client | None = None) -> None:
        super().__init__(base_url, api_key, timeout, retry, headers)
        self._owned = http_client is None
        self._http = http_client or httpx.Client(timeout=timeout, transport=transport)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        if self._owned:
            self._http.close()

    def call(self, call: calls.Call[T]) -> T:
        request = self._request(call)
        attempt = 1
        while True:
            try:
                response = self._http.request(**request, timeout=self.timeout)
            except httpx.TransportError as error:
                wait = self.retry.wait_for_error(attempt, error)
                if wait is None:
                    raise _transport_error(error, request["url"]) from error
            else:
                wait = self.retry.wait_for_answer(attempt, response)
                if wait is None:
                    return call.result(response)
            time.sleep(wait)
            attempt += 1

    def detect(self, image: ImageInput, *, min_face_size: int | None = None,
               thresholds: Sequence[float] | None = None, scale_factor: float | None = None,
               max_faces: int | None = None) -> DetectResult:
        return self.call(calls.detect(image, min_face_size=min_face_size, thresholds=thresholds,
                                      scale_factor=scale_factor, max_faces=max_faces))

    def annotate(self, image: ImageInput, *, min_face_size: int | None = None,
                 thresholds: Sequence[float] | None = None, scale_factor: float | None = None,
                 max_faces: int | None = None) -> ImageResult:
        """POST /v1/detect with annotate=true: the image (PNG) with boxes and landmarks drawn."""
        return self.call(calls.annotate(image, min_face_size=min_face_size, thresholds=thresholds,
                                        scale_factor=scale_factor, max_faces=max_faces))

    def embed(self, image: ImageInput, *, min_face_size: int | None = None,
              thresholds: Sequence[float] | None = None, scale_factor: float | None = None,
              max_faces: int | None = None) -> EmbedResult:
        return self.call(calls.embed(image, min_face_size=min_face_size, thresholds=thresholds,
                                     scale_factor=scale_factor, max_faces=max_faces))

    def verify(self, image_a: ImageInput, image_b: ImageInput, *, threshold: float | None = None,
               face: Literal["largest", "best_match"] | None = None, min_face_size: int | None = None,
               thresholds: Sequence[float] | None = None, scale_factor: float | None = None,
               max_faces: int | None = None) -> VerifyResult:
        return self.call(calls.verify(image_a, image_b, threshold=threshold, face=face, min_face_size=min_face_size,
                                      thresholds=thresholds, scale_factor=scale_factor, max_faces=max_faces))

    def stylize(self, image: ImageInput, style: str | int | None = None, *, style_image: ImageInput | None = None,
                strength: float | None = None, preserve_color: bool | None = None, max_side: int | None = None,
                format: calls.StyleFormat | None = None, quality: int | None = None) -> ImageResult:
        return self.call(calls.stylize(image, style, style_image=style_image, strength=strength,
                                       preserve_color=preserve_color, max_side=max_side, format=format,
                                       quality=quality))

    def styles(self) -> list[Style]:
        return self.call(calls.styles())

    def style_preview(self, style_id: str | int) -> ImageResult:
        return self.call(calls.style_preview(style_id))

    def models(self) -> list[ModelInfo]:
        return self.call(calls.models())

    def health(self) -> Health:
        return self.call(calls.health())

    def ready(self) -> Readiness:
        return self.call(calls.ready())


class AsyncClient(_Base):
    """The asyncio twin of Client (same methods, awaited). http_client: an httpx.AsyncClient to send with, e.g.
    one on httpx.ASGITransport; it is not closed here. Image files named by path are read synchronously."""

    def __init__(self, base_url: str | None = None, *, api_key: str | None = None,
                 timeout: float | httpx.Timeout = 60.0, retry: Retry = Retry(),
                 headers: dict[str, str] | None = None, transport: httpx.AsyncBaseTransport | None = None,
                 http_client: httpx.AsyncClient | None = None) -> None:
        super().__init__(base_url, api_key, timeout, retry, headers)
        self._owned = http_client is None
        self._http = http_client or httpx.AsyncClient(timeout=timeout, transport=transport)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None,
                        traceback: TracebackType | None) -> None:
        await self.close()

    async def close(self) -> None:
        if self._owned:
            await self._http.aclose()

    async def call(self, call: calls.Call[T]) -> T:
        request = self._request(call)
        attempt = 1
        while True:
            try:
                response = await self._http.request(**request, timeout=self.timeout)
            except httpx.TransportError as error:
                wait = self.retry.wait_for_error(attempt, error)
                if wait is None:
                    raise _transport_error(error, request["url"]) from error
            else:
                wait = self.retry.wait_for_answer(attempt, response)
                if wait is None:
                    return call.result(response)
            await asyncio.sleep(wait)
            attempt += 1

    async def detect(self, image: ImageInput, *, min_face_size: int | None = None,
                     thresholds: Sequence[float] | None = None, scale_factor: float | None = None,
                     max_faces: int | None = None) -> DetectResult:
        return await self.call(calls.detect(image, min_face_size=min_face_size, thresholds=thresholds,
                                            scale_factor=scale_factor, max_faces=max_faces))

    async def annotate(self, image: ImageInput, *, min_face_size: int | None = None,
                       thresholds: Sequence[float] | None = None, scale_factor: float | None = None,
                       max_faces: int | None = None) -> ImageResult:
        return await self.call(calls.annotate(image, min_face_size=min_face_size, thresholds=thresholds,
                                              scale_factor=scale_factor, max_faces=max_faces))

    async def embed(self, image: ImageInput, *, min_face_size: int | None = None,
                    thresholds: Sequence[float] | None = None, scale_factor: float | None = None,
                    max_faces: int | None = None) -> EmbedResult:
        return await self.call(calls.embed(image, min_face_size=min_face_size, thresholds=thresholds,
                                           scale_factor=scale_factor, max_faces=max_faces))

    async def verify(self, image_a: ImageInput, image_b: ImageInput, *, threshold: float | None = None,
                     face: Literal["largest", "best_match"] | None = None, min_face_size: int | None = None,
                     thresholds: Sequence[float] | None = None, scale_factor: float | None = None,
                     max_faces: int | None = None) -> VerifyResult:
        return await self.call(calls.verify(image_a, image_b, threshold=threshold, face=face,
                                            min_face_size=min_face_size, thresholds=thresholds,
                                            scale_factor=scale_factor, max_faces=max_faces))

    async def stylize(self, image: ImageInput, style: str | int | None = None, *,
                      style_image: ImageInput | None = None, strength: float | None = None,
                      preserve_color: bool | None = None, max_side: int | None = None,
                      format: calls.StyleFormat | None = None, quality: int | None = None) -> ImageResult:
        return await self.call(calls.stylize(image, style, style_image=style_image, strength=strength,
                                             preserve_color=preserve_color, max_side=max_side, format=format,
                                             quality=quality))

    async def styles(self) -> list[Style]:
        return await self.call(calls.styles())

    async def style_preview(self, style_id: str | int) -> ImageResult:
        return await self.call(calls.style_preview(style_id))

    async def models(self) -> list[ModelInfo]:
        return await self.call(calls.models())

    async def health(self) -> Health:
        return await self.call(calls.health())

    async def ready(self) -> Readiness:
        return await self.call(calls.ready())
