"""app/ratelimit.py: rule parsing and the token bucket, on a clock the test moves."""

from __future__ import annotations

import pytest

from app.errors import InvalidParameter, RateLimited
from app.ratelimit import RateLimit, RateLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(("text", "burst", "per_second", "size"), [
    ("20/s", None, 20.0, 20.0), ("600/min", None, 10.0, 10.0), ("5/h", None, 5 / 3600, 1.0),
    (" 2 / second ", 7, 2.0, 7.0), ("0.5/s", None, 0.5, 1.0),
])
def test_parse(text: str, burst: int | None, per_second: float, size: float) -> None:
    assert RateLimit.parse(text, burst) == RateLimit(per_second=pytest.approx(per_second), burst=size)


@pytest.mark.parametrize("text", ["20", "20/fortnight", "-1/s", "0/s", "fast", "20/s/s"])
def test_parse_refuses(text: str) -> None:
    with pytest.raises(InvalidParameter):
        RateLimit.parse(text)


def test_empty_means_no_limit() -> None:
    assert RateLimit.parse("") is None


def test_burst_then_the_rate() -> None:
    clock = Clock()
    limiter = RateLimiter(RateLimit(per_second=2.0, burst=3.0), clock)
    assert [limiter.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]  # the burst
    assert limiter.take("a") == pytest.approx(0.5)  # empty: one token takes half a second
    clock.now += 0.5
    assert limiter.take("a") == 0.0
    assert limiter.take("a") > 0
    clock.now += 100  # a long pause refills to the burst, never beyond it
    assert [limiter.take("a") for _ in range(4)][:3] == [0.0, 0.0, 0.0]
    assert limiter.take("a") > 0


def test_one_clients_flood_does_not_limit_another() -> None:
    clock = Clock()
    limiter = RateLimiter(RateLimit(per_second=1.0, burst=2.0), clock)
    for _ in range(50):
        limiter.take("flood")
    assert limiter.take("quiet") == 0.0 and limiter.take("quiet") == 0.0


def test_check_raises_with_retry_after_rounded_up() -> None:
    clock = Clock()
    limiter = RateLimiter(RateLimit(per_second=0.25, burst=1.0), clock)
    limiter.check("a")
    with pytest.raises(RateLimited) as refused:
        limiter.check("a")
    assert refused.value.status == 429 and refused.value.code == "RATE_LIMITED"
    assert refused.value.headers == {"Retry-After": "4"}
