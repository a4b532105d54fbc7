"""The server inside a 3 GiB memory cgroup, flooded with 24-megapixel stylisations and detections: every answer is
200, 413 or 503, the kernel's OOM killer never fires, and the server is healthy afterwards.

The memory budget (app/memory.py) is derived from the cgroup's limit: a 4096-px stylisation of a 24 MP photo
(about 3.5 GiB measured, bench/memory_factors.py) can never fit and is refused 413 with the max_side that
would; one at max_side 1024 fits, and several of them wait for each other instead of adding up. cgroup v1's
memory controller works here as root; elsewhere the test is skipped, saying why.
"""

from __future__ import annotations

import contextlib
import io
import os
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from PIL import Image

from tests.conftest import photo_bytes
from tests.hardening.conftest import live_server

CGROUP_ROOT = Path("/sys/fs/cgroup/memory")
LIMIT_BYTES = 3 * 1024**3


@pytest.fixture
def memory_cgroup() -> Iterator[Path]:
    if os.geteuid() != 0 or not (CGROUP_ROOT / "cgroup.procs").exists():
        pytest.skip("needs root and cgroup v1's memory controller at /sys/fs/cgroup/memory to make a cgroup")
    group = CGROUP_ROOT / f"atelier-test-{uuid.uuid4().hex[:8]}"
    try:
        group.mkdir()
        (group / "memory.limit_in_bytes").write_text(str(LIMIT_BYTES))
    except OSError as exc:
        pytest.skip(f"cannot make a memory cgroup here: {exc}")
    try:
        yield group
    finally:
        for pid in (group / "cgroup.procs").read_text().split():  # anything left goes back to the parent
            with contextlib.suppress(OSError):
                (CGROUP_ROOT / "cgroup.procs").write_text(pid)
        group.rmdir()


def _photo_24mp() -> bytes:
    with Image.open(io.BytesIO(photo_bytes("obama3.jpg"))) as photo:
        buffer = io.BytesIO()
        photo.convert("RGB").resize((6000, 4000), Image.BILINEAR).save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


def _oom_kills(group: Path) -> int:
    for line in (group / "memory.oom_control").read_text().splitlines():
        if line.startswith("oom_kill "):
            return int(line.split()[1])
    failures = int((group / "memory.failcnt").read_text())  # older kernels: no oom_kill counter
    return 0 if failures == 0 else -1


def test_a_flood_of_large_jobs_in_a_memory_limited_cgroup(memory_cgroup: Path) -> None:
    large = _photo_24mp()
    obama = photo_bytes("obama.jpg")
    with live_server(cgroup=memory_cgroup, max_queue="16", request_timeout_s="120") as (base, process):
        assert str(process.pid) in (memory_cgroup / "cgroup.procs").read_text().split()
        metrics = httpx.get(f"{base}/metrics", timeout=30).text
        budget = float(next(line.split()[1] for line in metrics.splitlines()
                            if line.startswith("atelier_memory_budget_bytes ")))
        assert 0 < budget < LIMIT_BYTES  # derived from the cgroup, not from the machine's 24 GiB

        def stylize(max_side: int) -> httpx.Response:
            return httpx.post(f"{base}/v1/stylize", files={"image": ("big.jpg", large)},
                              data={"style": "7", "max_side": str(max_side), "format": "jpeg"}, timeout=300)

        def detect() -> httpx.Response:
            return httpx.post(f"{base}/v1/detect", files={"image": ("o.jpg", obama)}, timeout=300)

        with ThreadPoolExecutor(max_workers=12) as pool:
            huge = [pool.submit(stylize, 4096) for _ in range(6)]
            fitting = [pool.submit(stylize, 1024) for _ in range(3)]
            detections = [pool.submit(detect) for _ in range(3)]
            answers = [f.result() for f in (*huge, *fitting, *detections)]

        assert {a.status_code for a in answers} <= {200, 413, 503}, [(a.status_code, a.text[:200]) for a in answers]
        for answer in (f.result() for f in huge):
            assert answer.status_code == 413, answer.text[:200]
            error = answer.json()["error"]
            assert error["code"] == "MEMORY_BUDGET" and "max_side=" in error["message"], error
        assert all(f.result().status_code == 200 for f in fitting), [f.result().text[:200] for f in fitting]
        assert all(f.result().status_code == 200 for f in detections)

        assert process.poll() is None, "the server died"
        assert _oom_kills(memory_cgroup) == 0, (memory_cgroup / "memory.oom_control").read_text()
        assert httpx.get(f"{base}/healthz", timeout=30).status_code == 200
        assert httpx.get(f"{base}/readyz", timeout=30).status_code == 200
        peak = int((memory_cgroup / "memory.max_usage_in_bytes").read_text())
        assert peak <= LIMIT_BYTES  # the kernel's own record of the cgroup's highest usage
