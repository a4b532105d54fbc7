"""The request id: taken from the client's X-Request-ID when it is a sane one, else made here; one per request.

It lives in a ContextVar, so it follows the request wherever its context is copied: into the inference gate's
threads (app/gate.py) and MTCNN's worker pool (app/pipelines/mtcnn.py), which run jobs in copies of the
caller's context. The log filter (app/logs.py) and the error handler (app/handlers.py) read it from there.
"""

from __future__ import annotations

import contextvars
import re
import uuid

HEADER = "X-Request-ID"
# What a client may send: 1-128 characters of a safe set (no spaces, quotes, CR/LF or other separators), so an
# id can go into a header, a log line or a JSON string as it is. Anything else is replaced, not repaired.
_SANE = re.compile(r"[A-Za-z0-9._:-]{1,128}")

REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("atelier_request_id", default=None)


def new_request_id() -> str:
    return uuid.uuid4().hex


def accept_request_id(offered: bytes | str | None) -> str:
    """The client's id when it is sane, else a fresh one."""
    if isinstance(offered, bytes):
        offered = offered.decode("latin-1")
    if offered is not None and _SANE.fullmatch(offered):
        return offered
    return new_request_id()


def current_request_id() -> str | None:
    """The id of the request this code runs for, or None outside any request (start-up, shutdown)."""
    return REQUEST_ID.get()
