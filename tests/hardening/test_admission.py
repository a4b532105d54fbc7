"""Admission comes before the body: a request's place in the gate is taken before a byte of its body is read.

So the gate's places (ATELIER_MAX_CONCURRENCY + ATELIER_MAX_QUEUE) bound the memory bodies take: an upload in
progress holds a place, a request past capacity is refused at once without its body being read, and an upload
slower than the deadline is cut off with 408 UPLOAD_TIMEOUT and gives its place back. Driven with raw sockets
against a live server, so that a body can be sent in halves or not at all.
"""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

import httpx
import numpy as np
import pytest
from starlette.requests import Request

from app.config import Settings
from app.intake import read_image_request
from tests.conftest import encode
from tests.hardening.conftest import live_server

ANSWER_WITHIN_S = 60  # generous: these answers need no inference, only the event loop
PNG = encode(np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8))


@contextmanager
def raw_request(base: str, path: str, content_length: int, content_type: str = "image/png",
                first_bytes: bytes = b"") -> Iterator[socket.socket]:
    """Open a connection and send the headers (and `first_bytes` of the body); the caller sends the rest."""
    url = urlsplit(base)
    sock = socket.create_connection((url.hostname, url.port), timeout=ANSWER_WITHIN_S)
    try:
        head = (f"POST {path} HTTP/1.1\r\nHost: {url.netloc}\r\nContent-Type: {content_type}\r\n"
                f"Content-Length: {content_length}\r\nConnection: close\r\n\r\n").encode()
        sock.sendall(head + first_bytes)
        yield sock
    finally:
        sock.close()


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
    return int(lines[0].split()[1]), {k.lower(): v for k, v in headers.items()}, body


def wait_until_admitted(base: str, count: int) -> None:
    for _ in range(600):
        if f"atelier_gate_admitted {float(count)}" in httpx.get(f"{base}/metrics", timeout=10).text:
            return
        time.sleep(0.05)
    raise AssertionError(f"the gate never held {count} request(s)")


def test_a_request_past_capacity_is_refused_before_its_body_is_read() -> None:
    with live_server(max_concurrency="1", max_queue="0", warmup="false") as (base, _):
        half = len(PNG) // 2
        with raw_request(base, "/v1/detect", len(PNG), first_bytes=PNG[:half]) as uploading:
            wait_until_admitted(base, 1)  # the server has taken the half-sent request in
            # The one place is held by an upload in progress. A 20 MB request now is answered without sending
            # a byte of its body: had the server waited to read it, recv would time out.
            with raw_request(base, "/v1/detect", 20_000_000) as refused:
                status, headers, body = read_response(refused)
            assert status == 503, body
            assert json.loads(body)["error"]["code"] == "OVERLOADED" and "retry-after" in headers
            uploading.sendall(PNG[half:])  # the first upload completes and is served
            status, _, body = read_response(uploading)
            assert status == 200, body
            assert json.loads(body)["faces"] == []
        metrics = httpx.get(f"{base}/metrics", timeout=10).text
        assert "atelier_overload_rejections_total 1.0" in metrics


def test_an_upload_slower_than_the_deadline_gets_408_and_frees_its_place() -> None:
    with live_server(max_concurrency="1", max_queue="0", request_timeout_s="1", warmup="false") as (base, _):
        with raw_request(base, "/v1/detect", len(PNG), first_bytes=PNG[:100]) as stalled:
            status, _, body = read_response(stalled)  # the rest of the body never comes
        assert status == 408, body
        assert json.loads(body)["error"]["code"] == "UPLOAD_TIMEOUT"
        response = httpx.post(f"{base}/v1/detect", content=PNG, headers={"Content-Type": "image/png"}, timeout=60)
        assert response.status_code == 200, response.text  # the place was given back


@pytest.mark.parametrize("kind", ["raw", "json", "multipart"])
def test_the_raw_body_is_dropped_once_parsed(kind: str) -> None:
    if kind == "raw":
        body, content_type = PNG, "image/png"
    elif kind == "json":
        body, content_type = json.dumps({"image": base64.b64encode(PNG).decode()}).encode(), "application/json"
    else:
        built = httpx.Request("POST", "http://x/", files={"image": ("i.png", PNG, "image/png")})
        body, content_type = built.read(), built.headers["content-type"]
    sent = False

    async def receive() -> dict[str, object]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    scope = {"type": "http", "method": "POST", "path": "/v1/detect", "query_string": b"",
             "headers": [(b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode())]}
    request = Request(scope, receive)
    upload = asyncio.run(read_image_request(request, ["image"], Settings(warmup=False)))
    assert upload.files["image"] == PNG
    assert not hasattr(request, "_body")  # nothing but the decoded field keeps the upload alive
