"""Readiness drains from the moment SIGTERM arrives, before the server stops accepting.

A load balancer (a Kubernetes Service, say) learns that a replica is going away from its readiness probe, a
moment after the replica got SIGTERM. If the listener closed at once, requests routed in that moment would
find it closed. So on SIGTERM the service reports not ready (GET /readyz: 503, "draining": true) at once, keeps
serving for ATELIER_DRAIN_DELAY_S while the balancer takes it out, and only then hands the signal to uvicorn,
which stops accepting and gives in-flight requests ATELIER_SHUTDOWN_GRACE_S to finish. A second SIGTERM skips
the rest of the delay. Ctrl-C (SIGINT) stops at once as before.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

log = logging.getLogger(__name__)


def drain_on_sigterm(mark_draining: Callable[[], None], delay_s: float) -> Callable[[], None]:
    """Wrap the SIGTERM handler installed now (uvicorn's, in the lifespan) with one that first marks the service
    draining; returns a function that puts the wrapped handler back. Nothing happens outside the main thread
    (signals can only be handled there: under a TestClient the lifespan runs in another thread)."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    loop = asyncio.get_running_loop()
    server_handler: Any = signal.getsignal(signal.SIGTERM)
    pending: list[asyncio.TimerHandle] = []

    def hand_over(signum: int, frame: FrameType | None) -> None:
        if callable(server_handler):
            server_handler(signum, frame)
        else:  # no handler of the server's: behave as the default would
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.raise_signal(signal.SIGTERM)

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        if pending:  # the second SIGTERM: stop waiting
            pending.pop().cancel()
            hand_over(signum, frame)
            return
        mark_draining()
        if delay_s <= 0:
            hand_over(signum, frame)
            return
        log.info("SIGTERM: reporting not ready, still serving for %g s before closing the listener", delay_s)

        def close_now() -> None:
            pending.clear()
            hand_over(signum, None)

        def later() -> None:
            pending.append(loop.call_later(delay_s, close_now))

        loop.call_soon_threadsafe(later)

    signal.signal(signal.SIGTERM, on_sigterm)

    def restore() -> None:
        signal.signal(signal.SIGTERM, server_handler)

    return restore
