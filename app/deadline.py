"""A job's deadline, seen by every step the job runs without being passed along.

The gate (app.gate) runs each job with a Deadline in a context variable, which the job's helper threads
inherit (they run in copies of its context). Two kinds of work honour it:
- onnxruntime runs (app.runtime) register a hook that sets their RunOptions.terminate, so cancelling the
  deadline stops a run in progress;
- pure numpy and OpenCV steps, which nothing can interrupt, call check_deadline() between steps and inside
  long loops, so a job past its deadline stops within one step instead of running to its end.
Outside a gated job (tests, benchmarks, the export toolchain) there is no deadline and nothing is checked.
Only the standard library here: pipelines import this module.
"""

from __future__ import annotations

import contextvars
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from app.errors import DeadlineExceeded


class Deadline:
    """Expires at a time.monotonic() instant, or earlier when cancelled (client gone, shutdown)."""

    def __init__(self, expires_at: float, budget_s: float) -> None:
        self.expires_at = expires_at
        self.budget_s = budget_s  # the whole allowance, for messages
        self._cancelled = threading.Event()
        self._lock = threading.Lock()
        self._hooks: dict[int, Callable[[], None]] = {}
        self._next_hook = 0

    @classmethod
    def after(cls, seconds: float) -> Deadline:
        return cls(time.monotonic() + seconds, seconds)

    def remaining(self) -> float:
        """Seconds left, 0 once expired or cancelled."""
        return 0.0 if self._cancelled.is_set() else max(0.0, self.expires_at - time.monotonic())

    def expired(self) -> bool:
        return self._cancelled.is_set() or time.monotonic() >= self.expires_at

    def check(self) -> None:
        """Raise DeadlineExceeded once the deadline has passed or was cancelled."""
        if self.expired():
            raise DeadlineExceeded(f"the request ran past its {self.budget_s:g} s deadline")

    def cancel(self) -> None:
        """Expire now and fire every registered hook (each once). Safe from any thread, idempotent."""
        with self._lock:
            if self._cancelled.is_set():
                return
            self._cancelled.set()
            hooks = list(self._hooks.values())
            self._hooks.clear()
        for hook in hooks:
            hook()

    @contextmanager
    def cancelling(self, hook: Callable[[], None]) -> Iterator[None]:
        """Call `hook` if the deadline is cancelled while the block runs (at once if it already was)."""
        with self._lock:
            already = self._cancelled.is_set()
            key = self._next_hook
            self._next_hook += 1
            if not already:
                self._hooks[key] = hook
        if already:
            hook()
        try:
            yield
        finally:
            with self._lock:
                self._hooks.pop(key, None)


CURRENT_DEADLINE: contextvars.ContextVar[Deadline | None] = contextvars.ContextVar("atelier_deadline", default=None)


def current_deadline() -> Deadline | None:
    return CURRENT_DEADLINE.get()


def check_deadline() -> None:
    """Raise DeadlineExceeded when the current job's deadline has passed; nothing outside a gated job."""
    deadline = CURRENT_DEADLINE.get()
    if deadline is not None:
        deadline.check()
