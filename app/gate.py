"""Bounded concurrency for inference, with a per-request deadline.

A request is admitted before its body is read (`async with gate.admit() as admission`), so the places of the
gate bound the memory that bodies take, not only the work: at most `concurrency` jobs run and at most `queue`
more are being uploaded or wait for a slot; past that a request is refused at once with 503 OVERLOADED and
Retry-After, before a byte of its body is read. The deadline starts at admission; an upload slower than the
deadline is answered 408 UPLOAD_TIMEOUT. Work runs in a small thread pool, off the event loop, under the
app.deadline.Deadline: onnxruntime runs are terminated when it is cancelled and numpy steps check it, so a job
past its deadline stops within one step.

A slot is held by the thread, not by the request: when the request stops waiting (its deadline passed, the
client went away, shutdown) it is answered at once, and its slot is freed only when the thread has really
finished. So the gate never admits more running jobs than it has slots, and nothing waits unseen in the
executor's queue. A job whose deadline passed while it waited for a slot is refused before it starts.
"""

from __future__ import annotations

import asyncio
import contextvars
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import TypeVar

from app import metrics
from app.deadline import CURRENT_DEADLINE, Deadline
from app.errors import DeadlineExceeded, MemoryBudgetExceeded, Overloaded, UploadTimeout
from app.memory import MIB, MemoryBudget

T = TypeVar("T")


def _start_unless_expired(deadline: Deadline, job: Callable[[], T]) -> T:
    deadline.check()  # expired in the queue: refuse before decoding anything
    return job()


class Admission:
    """One admitted request's place in the gate: read its body within the deadline, then run one job."""

    def __init__(self, gate: InferenceGate, deadline: Deadline) -> None:
        self._gate = gate
        self.deadline = deadline
        self.started = False  # once the job has a slot, the place is freed when its thread ends

    async def read(self, reading: Awaitable[T]) -> T:
        """Await the body read (or any intake step) within what is left of the deadline."""
        try:
            return await asyncio.wait_for(reading, timeout=self.deadline.remaining())
        except TimeoutError:
            raise UploadTimeout(
                f"the request body did not arrive within the {self.deadline.budget_s:g} s deadline") from None

    async def run(self, job: Callable[[], T], memory_bytes: int = 0, too_large: str = "") -> T:
        """Run `job` once its estimated peak memory fits the budget (waiting in turn) and a slot is free.

        A job whose estimate exceeds the whole budget is refused with MemoryBudgetExceeded; `too_large` says
        how the caller could make it fit.
        """
        if self.started:
            raise RuntimeError("an admission runs one job")
        budget = self._gate.memory
        memory_bytes = memory_bytes if budget is not None else 0
        if budget is not None and not budget.fits_at_all(memory_bytes):
            raise MemoryBudgetExceeded(
                f"this request needs about {memory_bytes // MIB} MB, more than this server's memory budget of "
                f"{budget.total // MIB} MB (ATELIER_MEMORY_BUDGET_MB){'; ' + too_large if too_large else ''}")
        if budget is not None and memory_bytes:
            await budget.reserve(memory_bytes, self.deadline.remaining())
        try:
            await asyncio.wait_for(self._gate._slots.acquire(), timeout=self.deadline.remaining())
        except TimeoutError:
            self._gate.release_memory(memory_bytes)
            raise DeadlineExceeded("the request waited past its deadline for a free slot") from None
        except BaseException:
            self._gate.release_memory(memory_bytes)
            raise
        self.started = True
        return await self._gate._run_in_thread(job, self.deadline, memory_bytes)


class InferenceGate:
    def __init__(self, concurrency: int, queue: int, timeout_s: float, retry_after_s: int,
                 memory: MemoryBudget | None = None) -> None:
        self.memory = memory
        self.concurrency = concurrency
        self.capacity = concurrency + queue
        self.timeout_s = timeout_s
        self.retry_after_s = retry_after_s
        self._admitted = 0  # waiting for a slot, or holding one (running, or finishing after its request left)
        self._running = 0
        self._slots = asyncio.Semaphore(concurrency)
        self._live: set[Deadline] = set()
        self._executor = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="inference")

    @property
    def admitted(self) -> int:
        return self._admitted

    @property
    def running(self) -> int:
        """Jobs holding a slot: threads at work, including those whose request has already been answered."""
        return self._running

    @asynccontextmanager
    async def admit(self, timeout_s: float | None = None) -> AsyncIterator[Admission]:
        """A place for one request, taken before its body is read; Overloaded at once when none is left.
        timeout_s: this request's deadline when it is not the gate's (a Ray replica: what the ingress has left)."""
        if self._admitted >= self.capacity:
            metrics.REJECTED.inc()
            raise Overloaded(
                "the service is at capacity; retry shortly",
                headers={"Retry-After": str(self.retry_after_s)},
            )
        self._admitted += 1
        metrics.ADMITTED.inc()
        admission = Admission(self, Deadline.after(self.timeout_s) if timeout_s is None else
                              Deadline(time.monotonic() + timeout_s, self.timeout_s))
        try:
            yield admission
        finally:
            if not admission.started:  # a started job gives its place back when its thread ends
                self._admitted -= 1
                metrics.ADMITTED.dec()

    async def run(self, job: Callable[[], T], timeout_s: float | None = None) -> T:
        """Admit and run `job` in one step (for callers with nothing to read first)."""
        async with self.admit(timeout_s) as admission:
            return await admission.run(job)

    async def _run_in_thread(self, job: Callable[[], T], deadline: Deadline, memory_bytes: int = 0) -> T:
        """Run `job` holding the slot (and memory) already acquired; both go back when the thread finishes."""
        context = contextvars.copy_context()
        context.run(CURRENT_DEADLINE.set, deadline)
        loop = asyncio.get_running_loop()
        self._running += 1
        self._live.add(deadline)
        metrics.INFLIGHT.inc()
        future = loop.run_in_executor(self._executor, context.run, _start_unless_expired, deadline, job)

        def finished(done: asyncio.Future[T]) -> None:
            if not done.cancelled():
                done.exception()  # retrieved here: the request may have stopped waiting for it
            self._live.discard(deadline)
            self._running -= 1
            self._admitted -= 1
            metrics.ADMITTED.dec()
            metrics.INFLIGHT.dec()
            self._slots.release()
            self.release_memory(memory_bytes)

        future.add_done_callback(finished)
        try:
            return await asyncio.wait_for(asyncio.shield(future), timeout=deadline.remaining())
        except TimeoutError:
            deadline.cancel()  # the thread stops at its next check; its slot stays taken until then
            raise DeadlineExceeded(f"the request ran past its {self.timeout_s:g} s deadline") from None
        except asyncio.CancelledError:
            deadline.cancel()  # nobody waits for the answer any more
            raise

    def release_memory(self, memory_bytes: int) -> None:
        if self.memory is not None and memory_bytes:
            self.memory.release(memory_bytes)

    def cancel_all(self) -> None:
        """Cancel every running job's deadline (shutdown after the drain period)."""
        for deadline in list(self._live):
            deadline.cancel()

    def shutdown(self) -> None:
        self.cancel_all()
        self._executor.shutdown(wait=True, cancel_futures=False)
