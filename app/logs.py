"""Log configuration, the one place: every line carries the request id (app/requestid.py), as text or as JSON.

`logging_config()` is a logging.config.dictConfig dict: app/cli.py applies it in the serving process and hands
it to uvicorn, which applies it again in every worker process and routes its own loggers (uvicorn.error,
uvicorn.access) through the same handler. The access line is logged while the response starts, inside the
request's context, so it carries the request id too.

What a line holds is the message and fixed fields only, never a record's arguments or extras: the service logs
no images, embeddings, boxes, file names or request bodies, and the JSON form adds none.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any, Literal

from app.requestid import current_request_id

LogFormat = Literal["text", "json"]
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s"
NO_REQUEST = "-"  # text lines logged outside any request (start-up, shutdown)


class RequestIdFilter(logging.Filter):
    """Adds `request_id` to each record logged in a request's context (none outside requests).

    A filter on the handler, so records of every logger that reach it get the id; it runs in the thread that
    logs (an inference thread, too), where the request's context is."""

    def filter(self, record: logging.LogRecord) -> bool:
        request_id = current_request_id()
        if request_id is not None and not hasattr(record, "request_id"):
            record.request_id = request_id
        return True


class TextFormatter(logging.Formatter):
    """Today's text lines with the request id after the logger name ("-" outside requests)."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT, defaults={"request_id": NO_REQUEST})


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, request_id, exception if any."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None),
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exception"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def logging_config(level: str, log_format: LogFormat) -> dict[str, Any]:
    """The root logger and uvicorn's loggers, all through one stderr handler with the chosen format."""
    formatter = JsonFormatter if log_format == "json" else TextFormatter
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request_id": {"()": RequestIdFilter}},
        "formatters": {"atelier": {"()": formatter}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "stream": "ext://sys.stderr",
                                "formatter": "atelier", "filters": ["request_id"]}},
        "root": {"level": level.upper(), "handlers": ["stderr"]},
        # uvicorn's loggers lose uvicorn's own handlers and propagate to the root's; uvicorn sets their levels.
        "loggers": {name: {"handlers": [], "propagate": True} for name in ("uvicorn", "uvicorn.error",
                                                                            "uvicorn.access")},
    }
