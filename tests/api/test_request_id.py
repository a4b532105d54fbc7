"""X-Request-ID: echoed when sane, replaced otherwise, on every answer (errors, 404s, 429s, 503s, preflights), in
every error body and on every log line of the request, inference threads included."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from app.logs import JsonFormatter, RequestIdFilter, TextFormatter
from app.main import create_app
from app.middleware import RequestIdMiddleware
from app.requestid import REQUEST_ID
from tests.conftest import MODELS_DIR, encode, gradient_rgb, photo_bytes

FRESH = re.compile(r"[0-9a-f]{32}")  # uuid4().hex


@pytest.fixture(scope="module")
def served() -> Iterator[TestClient]:
    """The committed models, with a small upload limit (for 413) and no warm-up (quicker)."""
    settings = Settings(models_dir=MODELS_DIR, warmup=False, max_upload_bytes=4096)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client


@pytest.mark.parametrize("offered", ["abc", "a" * 128, "req-1.2:3_x", "0", "A:B-c.d_e"])
def test_a_sane_id_is_echoed(tiny_client: TestClient, offered: str) -> None:
    response = tiny_client.get("/healthz", headers={"X-Request-ID": offered})
    assert response.headers["x-request-id"] == offered


@pytest.mark.parametrize("offered", [
    "", "a" * 129, "has space", 'quo"te', "<script>", "semi;colon", "a,b", "slash/ed", "tab\there", "ünïcode",
    "abc\n", "%0d%0aSet-Cookie:x",
])
def test_an_insane_id_is_replaced_by_a_fresh_one(tiny_client: TestClient, offered: str) -> None:
    response = tiny_client.get("/healthz", headers={"X-Request-ID": offered.encode()})
    assert FRESH.fullmatch(response.headers["x-request-id"]), response.headers["x-request-id"]


def test_without_an_id_each_request_gets_its_own(tiny_client: TestClient) -> None:
    ids = [tiny_client.get("/healthz").headers["x-request-id"] for _ in range(50)]
    assert all(FRESH.fullmatch(i) for i in ids)
    assert len(set(ids)) == len(ids)
    # An id a client sent is not carried over to the next request on the same connection.
    tiny_client.get("/healthz", headers={"X-Request-ID": "sticky"})
    assert tiny_client.get("/healthz").headers["x-request-id"] != "sticky"


def _answer_to(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """The response headers of the bare middleware for raw request headers (what an HTTP client would refuse)."""
    async def app(scope: object, receive: object, send: object) -> None:
        await send({"type": "http.response.start", "status": 200})  # type: ignore[operator]
        await send({"type": "http.response.body", "body": b""})  # type: ignore[operator]

    sent: list[dict[str, object]] = []

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": b""}

    scope = {"type": "http", "method": "GET", "path": "/", "headers": headers}
    asyncio.run(RequestIdMiddleware(app)(scope, receive, send))  # type: ignore[arg-type]
    return list(sent[0]["headers"])  # type: ignore[call-overload]


@pytest.mark.parametrize("raw", [b"abc\r\nSet-Cookie: session=1", b"abc\r\n\r\n<html>", b"abc\x00", b"\xff\xfe"])
def test_header_injection_attempts_are_replaced(raw: bytes) -> None:
    headers = _answer_to([(b"x-request-id", raw)])
    (value,) = [v for k, v in headers if k == b"x-request-id"]
    assert FRESH.fullmatch(value.decode()) and not any(k == b"set-cookie" for k, _ in headers)


def test_the_first_of_two_ids_counts_and_the_answer_has_one() -> None:
    headers = _answer_to([(b"x-request-id", b"first"), (b"x-request-id", b"second")])
    assert [v for k, v in headers if k == b"x-request-id"] == [b"first"]


def _assert_error_carries_id(response: object, status: int, code: str, request_id: str) -> None:
    assert response.status_code == status, response.text  # type: ignore[attr-defined]
    body = response.json()  # type: ignore[attr-defined]
    assert body["error"]["code"] == code and body["error"]["request_id"] == request_id
    assert response.headers["x-request-id"] == request_id  # type: ignore[attr-defined]
    assert response.headers.get_list("x-request-id") == [request_id]  # type: ignore[attr-defined]  # no duplicate


def test_error_bodies_carry_the_id(served: TestClient) -> None:
    noise = encode(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    assert len(noise) > 4096
    cases = [
        (lambda h: served.post("/v1/detect", content=b"not an image", headers={**h, "Content-Type": "image/png"}),
         422, "INVALID_IMAGE"),
        (lambda h: served.post("/v1/detect?min_face_size=-3", content=b"x",
                               headers={**h, "Content-Type": "image/png"}), 422, "INVALID_PARAMETER"),
        (lambda h: served.get("/no/such/path", headers=h), 404, "NOT_FOUND"),
        (lambda h: served.get("/v1/styles/no-such-style/preview", headers=h), 404, "UNKNOWN_STYLE"),
        (lambda h: served.delete("/healthz", headers=h), 405, "METHOD_NOT_ALLOWED"),
        (lambda h: served.post("/v1/detect", content=noise, headers={**h, "Content-Type": "image/png"}),
         413, "PAYLOAD_TOO_LARGE"),
    ]
    for number, (call, status, code) in enumerate(cases):
        _assert_error_carries_id(call({"X-Request-ID": f"case-{number}"}), status, code, f"case-{number}")
    fresh = served.get("/no/such/path")
    assert fresh.json()["error"]["request_id"] == fresh.headers["x-request-id"]
    assert FRESH.fullmatch(fresh.headers["x-request-id"])


def test_overloaded_503_carries_the_id(served: TestClient) -> None:
    gate = served.app.state.service.gate  # type: ignore[attr-defined]
    gate._admitted += gate.capacity  # every place taken, as by requests in flight
    try:
        response = served.post("/v1/detect", content=encode(gradient_rgb()),
                               headers={"Content-Type": "image/png", "X-Request-ID": "busy"})
    finally:
        gate._admitted -= gate.capacity
    _assert_error_carries_id(response, 503, "OVERLOADED", "busy")
    assert response.headers["retry-after"]


def test_not_ready_401_and_429_carry_the_id(tiny_models: Path) -> None:
    cold = TestClient(create_app(Settings(models_dir=tiny_models)))  # lifespan not run: not ready
    _assert_error_carries_id(cold.get("/v1/models", headers={"X-Request-ID": "cold"}), 503, "NOT_READY", "cold")
    settings = Settings(models_dir=tiny_models, api_keys="k", rate_limit="1/min", rate_burst=1)
    with TestClient(create_app(settings)) as client:
        _assert_error_carries_id(client.get("/v1/models", headers={"X-Request-ID": "nokey"}), 401, "UNAUTHORIZED",
                                 "nokey")
        keyed = {"X-API-Key": "k"}
        assert client.get("/v1/models", headers=keyed).status_code == 200
        _assert_error_carries_id(client.get("/v1/models", headers={**keyed, "X-Request-ID": "limited"}), 429,
                                 "RATE_LIMITED", "limited")


def test_cors_preflight_carries_the_id_and_browsers_may_read_it(tiny_models: Path) -> None:
    settings = Settings(models_dir=tiny_models, cors_origins="https://example.org")
    with TestClient(create_app(settings)) as client:
        preflight = client.options("/v1/models", headers={
            "Origin": "https://example.org", "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "X-Request-ID"})
        assert preflight.status_code == 200 and FRESH.fullmatch(preflight.headers["x-request-id"])
        assert "x-request-id" in preflight.headers["access-control-allow-headers"].lower()
        response = client.get("/v1/models", headers={"Origin": "https://example.org", "X-Request-ID": "cors-1"})
        assert response.headers["x-request-id"] == "cors-1"
        assert "x-request-id" in response.headers["access-control-expose-headers"].lower()


def test_the_openapi_error_model_documents_the_id(tiny_client: TestClient) -> None:
    schemas = tiny_client.get("/openapi.json").json()["components"]["schemas"]
    assert "request_id" in schemas["ErrorDetail"]["properties"]
    assert set(schemas["ErrorDetail"]["required"]) == {"code", "message", "request_id"}


# --- Logs ---------------------------------------------------------------------------------------------------
def _record(message: str = "hello %s", args: tuple[object, ...] = ("world",), request_id: str | None = "r-1",
            exc_info: object = None) -> logging.LogRecord:
    record = logging.LogRecord("app.test", logging.WARNING, __file__, 1, message, args, exc_info)  # type: ignore[arg-type]
    token = REQUEST_ID.set(request_id)
    try:
        RequestIdFilter().filter(record)
    finally:
        REQUEST_ID.reset(token)
    return record


def test_text_lines_carry_the_id_or_a_dash() -> None:
    assert TextFormatter().format(_record()).endswith(" WARNING app.test [r-1]: hello world")
    assert TextFormatter().format(_record(request_id=None)).endswith(" WARNING app.test [-]: hello world")


def test_json_lines_parse_and_carry_the_id_and_exception() -> None:
    line = json.loads(JsonFormatter().format(_record()))
    assert set(line) == {"time", "level", "logger", "message", "request_id"}
    assert line["level"] == "WARNING" and line["logger"] == "app.test" and line["message"] == "hello world"
    assert line["request_id"] == "r-1" and re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", line["time"])
    assert json.loads(JsonFormatter().format(_record(request_id=None)))["request_id"] is None
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        import sys

        failed = json.loads(JsonFormatter().format(_record("failed", (), exc_info=sys.exc_info())))
    assert failed["message"] == "failed" and "RuntimeError: boom" in failed["exception"]
    assert "\n" not in JsonFormatter().format(_record("two\nlines", ()))  # one object per line, always


def test_a_log_line_from_an_inference_thread_carries_the_id(client: TestClient,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="app.pipelines.mtcnn")
    caplog.handler.addFilter(RequestIdFilter())
    response = client.post("/v1/detect", files={"image": ("p.jpg", photo_bytes("obama.jpg"), "image/jpeg")},
                           headers={"X-Request-ID": "thread-1"})
    assert response.status_code == 200
    (line,) = [r for r in caplog.records if r.getMessage().startswith("mtcnn ")]
    assert line.threadName.startswith("inference")  # the gate's thread, not the event loop's
    assert line.request_id == "thread-1"  # type: ignore[attr-defined]


def test_mtcnns_worker_threads_see_the_callers_id(caplog: pytest.LogCaptureFixture) -> None:
    from app.pipelines.mtcnn import _Workers

    caplog.set_level(logging.INFO, logger="app.test")
    caplog.handler.addFilter(RequestIdFilter())
    workers = _Workers(2)
    token = REQUEST_ID.set("pool-1")
    try:
        workers.map(lambda item: logging.getLogger("app.test").info("task %d", item), range(4))
    finally:
        REQUEST_ID.reset(token)
        workers.close()
    records = [r for r in caplog.records if r.name == "app.test"]
    assert len(records) == 4 and all(r.threadName.startswith("mtcnn") for r in records)
    assert {r.request_id for r in records} == {"pool-1"}  # type: ignore[attr-defined]
