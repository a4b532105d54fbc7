"""A worker killed with SIGKILL under load: the other worker keeps serving, uvicorn's supervisor starts a new
one, requests of the dead worker fail as connection errors (never hang), and soon every request succeeds again.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.conftest import photo_bytes
from tests.hardening.conftest import live_server

CLIENTS = 4
REQUEST_TIMEOUT_S = 60  # a hang would show as a timeout; none is allowed
RECOVERED_WITHIN_S = 10  # the bar: from the kill, every request succeeds again within this
PHOTO = photo_bytes("obama.jpg")


@dataclass(frozen=True)
class Outcome:
    started: float
    ended: float
    status: int | None  # None: the request failed without an HTTP answer
    error: str = ""


def worker_pids(supervisor: int) -> set[int]:
    """uvicorn's worker processes: the supervisor's children that run the server (not multiprocessing's helpers)."""
    children = Path(f"/proc/{supervisor}/task/{supervisor}/children").read_text().split()
    workers = set()
    for pid in map(int, children):
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except FileNotFoundError:
            continue
        if "resource_tracker" not in command:
            workers.add(pid)
    return workers


def wait_for(condition: object, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise AssertionError(f"{what} within {timeout_s} s")


def test_a_killed_worker_is_replaced_and_the_other_keeps_serving() -> None:
    with live_server(workers="2", max_concurrency="2", warmup="false") as (base, process):
        wait_for(lambda: len(worker_pids(process.pid)) == 2, 60, "two workers")
        outcomes: list[Outcome] = []
        lock = threading.Lock()
        stop = threading.Event()

        def client() -> None:
            while not stop.is_set():
                started = time.monotonic()
                try:  # a new connection each time: the kernel spreads them over both workers
                    response = httpx.post(f"{base}/v1/detect", files={"image": ("p.jpg", PHOTO)},
                                          timeout=REQUEST_TIMEOUT_S)
                    outcome = Outcome(started, time.monotonic(), response.status_code)
                except httpx.TimeoutException as exc:
                    outcome = Outcome(started, time.monotonic(), None, f"hang: {exc!r}")
                except httpx.TransportError as exc:  # connection reset, closed, refused
                    outcome = Outcome(started, time.monotonic(), None, type(exc).__name__)
                with lock:
                    outcomes.append(outcome)

        with ThreadPoolExecutor(max_workers=CLIENTS) as pool:
            for _ in range(CLIENTS):
                pool.submit(client)
            wait_for(lambda: sum(o.status == 200 for o in outcomes) >= 8, 120, "requests served before the kill")
            before = worker_pids(process.pid)
            victim = min(before)
            killed_at = time.monotonic()
            os.kill(victim, signal.SIGKILL)
            wait_for(lambda: len(worker_pids(process.pid) - before) == 1 and len(worker_pids(process.pid)) == 2,
                     120, "a replacement worker")
            # Keep the load on until well past the recovery bar, so late requests are judged too.
            wait_for(lambda: time.monotonic() > killed_at + RECOVERED_WITHIN_S + 5, 60, "the end of the load")
            stop.set()

        assert process.poll() is None  # the supervisor itself never went down
        assert victim not in worker_pids(process.pid)
        hangs = [o for o in outcomes if o.error.startswith("hang")]
        assert not hangs, hangs
        assert all(o.status in (200, None) for o in outcomes), sorted({o.status for o in outcomes})
        during = [o for o in outcomes if killed_at <= o.started < killed_at + RECOVERED_WITHIN_S]
        assert any(o.status == 200 for o in during), "nothing was served while the dead worker was replaced"
        late = [o for o in outcomes if o.started >= killed_at + RECOVERED_WITHIN_S]
        assert late and all(o.status == 200 for o in late), [o for o in late if o.status != 200]
        failed = [o for o in outcomes if o.status is None]
        # Only requests that were in flight on the victim at the kill may fail, and only as connection errors.
        assert all(o.started <= killed_at + 1.0 for o in failed), failed
