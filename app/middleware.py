"""Pure-ASGI middleware: request count and latency per route template and status (never per raw path)."""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app import metrics


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
