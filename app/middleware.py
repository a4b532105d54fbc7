"""Pure-ASGI middleware: the request id on every request and response; request count and latency per route
template and status (never per raw path).

Pure ASGI rather than BaseHTTPMiddleware: that one runs the app in another task, which breaks streaming
responses and keeps ContextVars set inside the request from the code around it.
"""

from __future__ import annotations

import time

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app import metrics
from app.requestid import HEADER, REQUEST_ID, accept_request_id

_HEADER_KEY = HEADER.lower().encode("latin-1")


class RequestIdMiddleware:
    """Sets the request id (app.requestid) for everything the request runs and adds X-Request-ID to its answer.

    Outermost of the app's middlewares, so CORS preflights, 404s and every exception handler's answer carry it.
    The id is not reset when the request ends: each request is its own task (uvicorn, TestClient), whose context
    ends with it, and the 500 handler runs in Starlette's ServerErrorMiddleware, outside this one, where it
    still needs the id for its body and header.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # The first X-Request-ID counts; a later duplicate cannot smuggle in another id.
        offered = next((value for key, value in scope.get("headers", []) if key == _HEADER_KEY), None)
        request_id = accept_request_id(offered)
        REQUEST_ID.set(request_id)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                MutableHeaders(scope=message)[HEADER] = request_id  # replaces one a handler set already
            await send(message)

        await self.app(scope, receive, send_with_id)


class MetricsMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"  # raw paths would explode label cardinality
            method = scope.get("method", "GET")
            metrics.REQUESTS.labels(route=template, method=method, status=str(status)).inc()
            metrics.REQUEST_SECONDS.labels(route=template, method=method).observe(time.perf_counter() - start)
