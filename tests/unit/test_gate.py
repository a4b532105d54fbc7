"""The inference gate: bounded admission, 503 with Retry-After when full, deadlines."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from app.errors import DeadlineExceeded, Overloaded
from app.gate import InferenceGate, check_deadline


def test_runs_job_off_the_event_loop_and_returns_its_value() -> None:
    async def scenario() -> tuple[int, bool]:
        gate = InferenceGate(concurrency=1, queue=0, timeout_s=5, retry_after_s=1)
        loop_thread = threading.get_ident()
        result = await gate.run(lambda: (41 + 1, threading.get_ident() != loop_thread))
        gate.shutdown()
        return result

    assert asyncio.run(scenario()) == (42, True)


def test_full_gate_answers_overloaded_with_retry_after() -> None:
    release = threading.Event()

    async def scenario() -> list[object]:
        gate = InferenceGate(concurrency=1, queue=1, timeout_s=5, retry_after_s=7)
        tasks = [asyncio.create_task(gate.run(release.wait)) for _ in range(2)]
        await asyncio.sleep(0.05)  # one running, one waiting: the gate is full
        with pytest.raises(Overloaded) as refused:
            await gate.run(lambda: None)
        assert refused.value.headers == {"Retry-After": "7"}
        release.set()
        results = await asyncio.gather(*tasks)
        assert gate.admitted == 0
        gate.shutdown()
        return list(results)

    assert asyncio.run(scenario()) == [True, True]


def test_job_past_deadline_is_cancelled_and_reported() -> None:
    observed: list[bool] = []

    def long_job() -> None:
        # Stands in for a pipeline making many model calls: each call checks the deadline first.
        for _ in range(200):
            time.sleep(0.01)
            try:
                check_deadline()
            except DeadlineExceeded:
                observed.append(True)
                raise

    async def scenario() -> float:
        gate = InferenceGate(concurrency=1, queue=0, timeout_s=0.1, retry_after_s=1)
        start = time.perf_counter()
        with pytest.raises(DeadlineExceeded):
            await gate.run(long_job)
        gate.shutdown()
        return time.perf_counter() - start

    elapsed = asyncio.run(scenario())
    assert observed == [True]  # the job itself saw the cancellation: it did not run on to the end
    assert elapsed < 1.0
