"""Overload, deadlines and graceful shutdown, against a real server process on loopback."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.conftest import photo_bytes
from tests.hardening.conftest import free_port, live_server

# A slow request: P-Net over a deep pyramid of a 1434x2333 photo (min_face_size 12) takes seconds here.
SLOW_PHOTO = "obama3.jpg"
# The smallest faces and the finest pyramid: about 2 s of detection here, so a request is surely still running
# when the tests below act on it (with MTCNN's default step the faster detector takes only ~0.6 s)
SLOW_OPTIONS = {"min_face_size": "12", "scale_factor": "0.95"}


def slow_detect(base: str, timeout: float = 120) -> httpx.Response:
    return httpx.post(f"{base}/v1/detect", files={"image": ("p.jpg", photo_bytes(SLOW_PHOTO))},
                      data=SLOW_OPTIONS, timeout=timeout)


def test_overload_answers_503_with_retry_after_and_nothing_hangs() -> None:
    """Capacity 2 (one running, one waiting), held by two uploads that the test completes when it chooses, so
    the answer does not depend on how fast the machine runs a detection."""
    from tests.hardening.test_admission import PNG, raw_request, read_response, wait_until_admitted

    with live_server(max_concurrency="1", max_queue="1", retry_after_s="3", request_timeout_s="60") as (base, _):
        half = len(PNG) // 2
        with raw_request(base, "/v1/detect", len(PNG), first_bytes=PNG[:half]) as first, \
                raw_request(base, "/v1/detect", len(PNG), first_bytes=PNG[:half]) as second:
            wait_until_admitted(base, 2)
            with ThreadPoolExecutor(max_workers=6) as pool:
                refused = list(pool.map(lambda _: slow_detect(base, timeout=90), range(6)))
            for response in refused:
                assert response.status_code == 503, response.text
                assert response.json()["error"]["code"] == "OVERLOADED"
                assert response.headers["retry-after"] == "3"
            first.sendall(PNG[half:])
            second.sendall(PNG[half:])
            assert read_response(first)[0] == 200 and read_response(second)[0] == 200
        assert slow_detect(base, timeout=90).status_code == 200  # capacity is back
        assert httpx.get(f"{base}/healthz").status_code == 200
        metrics = httpx.get(f"{base}/metrics").text
        assert "atelier_overload_rejections_total 6.0" in metrics


def test_deadline_cancels_inference_with_503_timeout() -> None:
    # How long the slow request takes to the end, measured here and now: the bound below is a ratio to it.
    with live_server() as (base, _):
        started = time.monotonic()
        assert slow_detect(base).status_code == 200
        full_run_s = time.monotonic() - started
    with live_server(request_timeout_s="0.2") as (base, _):
        started = time.monotonic()
        response = slow_detect(base)
        answered_s = time.monotonic() - started
        assert response.status_code == 503 and response.json()["error"]["code"] == "TIMEOUT"
        assert answered_s < full_run_s / 2, (answered_s, full_run_s)  # answered at its deadline, not at the end
        assert httpx.get(f"{base}/healthz").status_code == 200
        assert httpx.get(f"{base}/readyz").status_code == 200
        # The cancelled job stops at its next deadline check and gives its slot back.
        for _ in range(300):
            if "atelier_inference_inflight 0.0" in httpx.get(f"{base}/metrics", timeout=30).text:
                break
            time.sleep(0.1)
        else:
            pytest.fail("the timed-out job never gave its slot back")


def test_sigterm_lets_in_flight_requests_finish() -> None:
    with live_server(shutdown_grace_s="60") as (base, process):
        result: dict[str, httpx.Response] = {}
        finished: list[float] = []

        def call() -> None:
            result["r"] = slow_detect(base)
            finished.append(time.monotonic())

        worker = threading.Thread(target=call)
        worker.start()
        for _ in range(600):  # until the server says the request is running (not a guess at how long it takes)
            if "atelier_inference_inflight 1.0" in httpx.get(f"{base}/metrics", timeout=10).text:
                break
            time.sleep(0.02)
        else:
            pytest.fail("the slow request never started")
        signalled = time.monotonic()
        process.send_signal(signal.SIGTERM)
        worker.join(timeout=120)
        assert finished and finished[0] > signalled  # running at the signal, answered after it
        assert result["r"].status_code == 200 and len(result["r"].json()["faces"]) >= 1
        # uvicorn re-raises the signal once it has shut down cleanly, as a well-behaved process should
        assert process.wait(timeout=60) in (0, -signal.SIGTERM)
        try:
            httpx.get(f"{base}/healthz", timeout=2)
            raise AssertionError("the server still accepts connections after SIGTERM")
        except httpx.ConnectError:
            pass


def test_the_healthcheck_command_follows_the_configured_port() -> None:
    with live_server(warmup="false") as (base, _):
        port = base.rsplit(":", 1)[1]
        command = [sys.executable, "-m", "app.cli", "healthcheck"]
        here = subprocess.run(command, env={**os.environ, "ATELIER_PORT": port}, timeout=30)
        assert here.returncode == 0
        elsewhere = subprocess.run([*command, "--port", str(free_port())], timeout=30)
        assert elsewhere.returncode == 1


def test_readiness_drains_from_sigterm_while_the_server_still_serves() -> None:
    """With a drain delay, /readyz says draining the moment SIGTERM arrives, requests are still served during
    the delay, and then the server stops as without one."""
    with live_server(drain_delay_s="4", warmup="false") as (base, process):
        assert httpx.get(f"{base}/readyz", timeout=10).json()["draining"] is False
        process.send_signal(signal.SIGTERM)
        for _ in range(200):  # the handler runs at the process's next bytecode, not necessarily before our GET
            readiness = httpx.get(f"{base}/readyz", timeout=10)
            if readiness.status_code == 503:
                break
            time.sleep(0.01)
        assert readiness.status_code == 503
        assert readiness.json()["draining"] is True and readiness.json()["ready"] is False
        served = httpx.post(f"{base}/v1/detect", files={"image": ("a.jpg", photo_bytes("obama.jpg"))}, timeout=60)
        assert served.status_code == 200 and served.json()["faces"]
        assert process.wait(timeout=60) in (0, -signal.SIGTERM)
