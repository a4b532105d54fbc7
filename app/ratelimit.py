"""Per-client rate limits: a token bucket per API key (per client address when keys are off).

`ATELIER_RATE_LIMIT=20/s` refills 20 tokens a second; `ATELIER_RATE_BURST` (default: one second's worth) is
the bucket's size, so a quiet client may send that many at once. Every /v1 request takes one token; without
one it is answered 429 RATE_LIMITED with Retry-After, the seconds until a token is back. Health, readiness,
metrics and the web page are not limited. Buckets live in the worker process: with several workers each
enforces the limit on the requests it receives.

A token bucket because that is what "a rate with a burst" means: the window limiters (fixed, sliding) of the
usual libraries allow up to twice the rate across a window edge and have no separate burst.
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from app import metrics
from app.errors import InvalidParameter, RateLimited

_UNITS = {"s": 1.0, "sec": 1.0, "second": 1.0, "m": 60.0, "min": 60.0, "minute": 60.0, "h": 3600.0,
          "hour": 3600.0}
MAX_TRACKED_CLIENTS = 100_000  # buckets kept; the least recently seen is dropped first (it would be full)


@dataclass(frozen=True)
class RateLimit:
    per_second: float
    burst: float

    @classmethod
    def parse(cls, text: str, burst: int | None = None) -> RateLimit | None:
        """'20/s', '600/min', '5/h' (None for ''); burst defaults to one second's worth, at least 1."""
        text = text.strip()
        if not text:
            return None
        match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*/\s*([a-z]+)", text.lower())
        if match is None or match.group(2) not in _UNITS or float(match.group(1)) <= 0:
            raise InvalidParameter(f"rate limit {text!r}: expected '<count>/<s|min|h>', e.g. '20/s'")
        per_second = float(match.group(1)) / _UNITS[match.group(2)]
        size = float(burst) if burst is not None else max(1.0, per_second)
        if size < 1:
            raise InvalidParameter(f"rate limit burst must be at least 1, got {burst}")
        return cls(per_second=per_second, burst=size)


class RateLimiter:
    """Token buckets by client key. Thread-safe; `clock` is injectable for tests."""

    def __init__(self, limit: RateLimit, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key -> (tokens, at)

    def take(self, key: str) -> float:
        """Take one token for `key`: 0.0 when granted, else the seconds until one is available."""
        now = self._clock()
        with self._lock:
            tokens, at = self._buckets.pop(key, (self.limit.burst, now))
            tokens = min(self.limit.burst, tokens + (now - at) * self.limit.per_second)
            if tokens >= 1.0:
                tokens -= 1.0
                wait = 0.0
            else:
                wait = (1.0 - tokens) / self.limit.per_second
            self._buckets[key] = (tokens, now)
            if len(self._buckets) > MAX_TRACKED_CLIENTS:
                self._buckets.popitem(last=False)
            return wait

    def check(self, key: str) -> None:
        """RateLimited (with Retry-After) unless `key` has a token."""
        wait = self.take(key)
        if wait > 0:
            metrics.RATE_LIMITED.inc()
            retry_after = max(1, math.ceil(wait))
            raise RateLimited(f"rate limit of {self.limit.per_second:g}/s (burst {self.limit.burst:g}) reached; "
                              f"retry in {retry_after} s", headers={"Retry-After": str(retry_after)})
