"""The one place where errors become HTTP: every error body is {"error": {"code", "message", "request_id"}}.

The request id (app/requestid.py) goes into the body and the X-Request-ID header here too: the 500 handler runs
outside app.middleware.RequestIdMiddleware, so that middleware cannot add the header to its answer."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.errors import AtelierError
from app.requestid import HEADER, current_request_id, new_request_id

log = logging.getLogger(__name__)

_HTTP_CODES = {
    400: "BAD_REQUEST",
    401: "UNAUTHORIZED",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    406: "NOT_ACCEPTABLE",
    413: "PAYLOAD_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
    422: "INVALID_PARAMETER",
    503: "NOT_READY",
}


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    request_id = current_request_id() or new_request_id()  # None only for an app built without the middleware
    return JSONResponse({"error": {"code": code, "message": message, "request_id": request_id}},
                        status_code=status, headers={**(headers or {}), HEADER: request_id})


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(AtelierError)
    async def _domain(request: Request, exc: AtelierError) -> JSONResponse:
        if exc.status == 500:  # a failure of ours, not of the request: keep its cause
            log.error("%s on %s %s: %s", exc.code, request.method, request.url.path, exc.message, exc_info=exc)
        return error_response(exc.status, exc.code, exc.message, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'] if p not in ('query', 'body', 'path'))}: {e['msg']}"
            for e in exc.errors()
        )
        return error_response(422, "INVALID_PARAMETER", problems or "invalid request")

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "HTTP_ERROR")
        return error_response(exc.status_code, code, str(exc.detail), dict(exc.headers or {}))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(500, "INTERNAL", "internal error; the incident was logged")
