"""A real uvicorn server in a subprocess on loopback, for tests that need signals or true concurrency."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.conftest import MODELS_DIR, REPO_ROOT


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_ready(base: str, process: subprocess.Popen[bytes], timeout_s: float, poll_s: float = 0.2) -> None:
    """Poll base/readyz until 200; RuntimeError (with the server's last output, when captured) if the process
    exits first or the time runs out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            output = process.stdout.read().decode() if process.stdout else ""
            raise RuntimeError(f"server exited with {process.returncode}:\n{output[-3000:]}")
        try:
            if httpx.get(f"{base}/readyz", timeout=max(1.0, poll_s * 5)).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(poll_s)
    raise RuntimeError(f"server did not become ready in {timeout_s:g} s")


@contextmanager
def live_server(cgroup: Path | None = None, **env: str) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """Start `atelier serve` with ATELIER_* settings from `env`; yields (base URL, process).

    cgroup: a cgroup v1 directory to start the server in (it joins before it loads anything)."""
    port = free_port()
    environment = {**os.environ, "ATELIER_MODELS_DIR": str(MODELS_DIR), "ATELIER_LOG_LEVEL": "warning",
                   **{f"ATELIER_{key.upper()}": value for key, value in env.items()}}
    process = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
        cwd=REPO_ROOT, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        preexec_fn=(lambda: (cgroup / "cgroup.procs").write_text(str(os.getpid()))) if cgroup else None,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(base, process, 120)
        yield base, process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


@pytest.fixture
def server() -> Callable[..., object]:
    return live_server
