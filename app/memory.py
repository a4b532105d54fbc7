"""The memory budget: a job runs only when its estimated peak fits beside the jobs already running.

Each job's peak is estimated before it runs, from its image size, its processing size and the model
(the factors live beside each pipeline: Stylizer.peak_bytes, app.pipelines.mtcnn.detection_peak_bytes,
FaceRecognizer.peak_bytes; measured with bench/memory_factors.py). A job that can never fit
is refused (413 MEMORY_BUDGET, the message says what to change); one that fits later waits, first come
first served, within its deadline. So concurrent requests cannot add up past the container's memory limit
and have the kernel's OOM killer end the process and every request in it.

The default budget is what is left, once the models are loaded, of the smaller of the memory cgroup's limit
(v1 or v2) and the machine's memory, less a margin for the interpreter, buffers and responses.
"""

from __future__ import annotations

import asyncio
import collections
from pathlib import Path

from app import metrics
from app.errors import DeadlineExceeded

MIB = 1024 * 1024
HEADROOM_FRACTION = 0.15  # of the limit, kept free for what no estimate covers (responses, sockets, the loop)
_UNLIMITED = 1 << 60  # cgroup v1 reports "no limit" as a huge number (9223372036854771712)


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def cgroup_memory_limit(proc_cgroup: Path = Path("/proc/self/cgroup"), root: Path = Path("/sys/fs/cgroup")
                        ) -> int | None:
    """This process's memory cgroup limit in bytes (v1 memory.limit_in_bytes or v2 memory.max); None if none."""
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        relative = path.lstrip("/")
        if "memory" in controllers.split(","):
            limit = _read_int(root / "memory" / relative / "memory.limit_in_bytes")
        elif controllers == "":
            limit = _read_int(root / relative / "memory.max") or _read_int(root / "unified" / relative / "memory.max")
        else:
            continue
        if limit is not None and limit < _UNLIMITED:
            return limit
    return None


def machine_memory(meminfo: Path = Path("/proc/meminfo")) -> int | None:
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def resident_bytes(status: Path = Path("/proc/self/status")) -> int:
    try:
        for line in status.read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def default_budget_bytes(workers: int = 1) -> int:
    """What one worker may give its jobs: its share of the limit, less the headroom and what it holds now."""
    limits = [limit for limit in (cgroup_memory_limit(), machine_memory()) if limit is not None]
    total = min(limits) if limits else 8 * 1024 * MIB
    share = total * (1.0 - HEADROOM_FRACTION) / max(1, workers)
    return max(64 * MIB, int(share - resident_bytes()))


class MemoryBudget:
    """Reservations of estimated peak bytes against a total; waiters are served in arrival order."""

    def __init__(self, total_bytes: int) -> None:
        self.total = total_bytes
        self.reserved = 0
        self._waiters: collections.deque[tuple[int, asyncio.Future[None]]] = collections.deque()
        metrics.MEMORY_BUDGET.set(total_bytes)

    def fits_at_all(self, size: int) -> bool:
        return size <= self.total

    async def reserve(self, size: int, timeout_s: float) -> None:
        """Wait (at most timeout_s) until `size` bytes fit; DeadlineExceeded past it. Call fits_at_all first."""
        size = min(size, self.total)
        if not self._waiters and self.reserved + size <= self.total:
            self._take(size)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (size, future)
        self._waiters.append(entry)
        try:
            await asyncio.wait_for(asyncio.shield(future), timeout=timeout_s)
        except TimeoutError:
            if future.done() and not future.cancelled():  # granted just as the wait ran out: give it back
                self.release(size)
            raise DeadlineExceeded("the request waited past its deadline for memory to run in") from None
        except BaseException:
            if future.done() and not future.cancelled():
                self.release(size)
            raise
        finally:
            if entry in self._waiters:
                self._waiters.remove(entry)
                self._grant()

    def release(self, size: int) -> None:
        self.reserved -= min(size, self.total)
        metrics.MEMORY_RESERVED.set(self.reserved)
        self._grant()

    def _take(self, size: int) -> None:
        self.reserved += size
        metrics.MEMORY_RESERVED.set(self.reserved)

    def _grant(self) -> None:
        # First come, first served: a large job at the head is not overtaken by small ones behind it.
        while self._waiters:
            size, future = self._waiters[0]
            if future.done():
                self._waiters.popleft()
                continue
            if self.reserved + size > self.total:
                return
            self._waiters.popleft()
            self._take(size)
            future.set_result(None)
