"""Bounded concurrency for inference, with a per-request deadline.

Work runs in a small thread pool, off the event loop. At most `concurrency` jobs run and at most `queue`
wait; past that a request is refused at once with 503 OVERLOADED and Retry-After rather than queued without
end. A job past its deadline is cancelled through onnxruntime's RunOptions.terminate (ModelSession.run reads
the current job's RunOptions from a context variable, so pipelines need not know) and answered 503 TIMEOUT.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import onnxruntime as ort

from app import metrics
from app.errors import DeadlineExceeded, Overloaded

T = TypeVar("T")

CURRENT_RUN_OPTIONS: contextvars.ContextVar[ort.RunOptions | None] = contextvars.ContextVar(
    "atelier_run_options", default=None
)


def check_deadline() -> ort.RunOptions | None:
    """The current job's RunOptions; raises DeadlineExceeded if the job was already cancelled."""
    options = CURRENT_RUN_OPTIONS.get()
    if options is not None and options.terminate:
        raise DeadlineExceeded("the request ran past its deadline")
    return options


class InferenceGate:
    def __init__(self, concurrency: int, queue: int, timeout_s: float, retry_after_s: int) -> None:
        self.concurrency = concurrency
        self.capacity = concurrency + queue
        self.timeout_s = timeout_s
        self.retry_after_s = retry_after_s
        self._admitted = 0
        self._slots = asyncio.Semaphore(concurrency)
        self._executor = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="inference")

    @property
    def admitted(self) -> int:
        return self._admitted

    async def run(self, job: Callable[[], T]) -> T:
        if self._admitted >= self.capacity:
            metrics.REJECTED.inc()
            raise Overloaded(
                "the service is at capacity; retry shortly",
                headers={"Retry-After": str(self.retry_after_s)},
            )
        self._admitted += 1
        deadline = time.monotonic() + self.timeout_s
        try:
            try:
                await asyncio.wait_for(self._slots.acquire(), timeout=self.timeout_s)
            except TimeoutError:
                raise DeadlineExceeded("the request waited past its deadline for a free slot") from None
            try:
                return await self._run_in_thread(job, max(0.0, deadline - time.monotonic()))
            finally:
                self._slots.release()
        finally:
            self._admitted -= 1

    async def _run_in_thread(self, job: Callable[[], T], remaining_s: float) -> T:
        options = ort.RunOptions()
        context = contextvars.copy_context()
        context.run(CURRENT_RUN_OPTIONS.set, options)
        loop = asyncio.get_running_loop()
        metrics.INFLIGHT.inc()
        future = loop.run_in_executor(self._executor, context.run, job)
        try:
            return await asyncio.wait_for(asyncio.shield(future), timeout=remaining_s)
        except TimeoutError:
            options.terminate = True  # onnxruntime aborts the run in progress; later runs refuse to start
            with contextlib.suppress(Exception):  # the aborted run's own error is expected and irrelevant
                await future
            raise DeadlineExceeded(f"the request ran past its {self.timeout_s:g} s deadline") from None
        finally:
            metrics.INFLIGHT.dec()

    def shutdown(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=False)
