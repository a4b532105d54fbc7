"""The inference gate: bounded admission, 503 with Retry-After when full, deadlines."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from app.deadline import Deadline, check_deadline
from app.errors import DeadlineExceeded, Overloaded
from app.gate import InferenceGate, _start_unless_expired


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


def test_never_more_jobs_run_than_slots() -> None:
    lock = threading.Lock()
    running, most = 0, 0

    def job() -> None:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        time.sleep(0.02)
        with lock:
            running -= 1

    async def scenario() -> None:
        gate = InferenceGate(concurrency=2, queue=10, timeout_s=30, retry_after_s=1)
        await asyncio.gather(*(gate.run(job) for _ in range(12)))
        assert gate.admitted == 0 and gate.running == 0
        gate.shutdown()

    asyncio.run(scenario())
    assert most == 2


def test_a_job_that_ignores_its_deadline_is_answered_at_once_and_keeps_its_slot() -> None:
    """A job that never checks its deadline (numpy with no checks, a C call): the request is answered TIMEOUT
    while the job is still running, and the slot stays taken until the thread really ends."""
    release = threading.Event()
    second_ran = threading.Event()

    async def scenario() -> None:
        gate = InferenceGate(concurrency=1, queue=1, timeout_s=0.2, retry_after_s=1)
        with pytest.raises(DeadlineExceeded, match="ran past"):
            await gate.run(release.wait)  # blocks until released: it cannot see the deadline
        assert not release.is_set()  # answered while the thread is still at work
        assert gate.running == 1 and gate.admitted == 1
        with pytest.raises(DeadlineExceeded, match="waited past its deadline"):
            await gate.run(second_ran.set)  # the slot is still held: this one never starts
        assert not second_ran.is_set()
        release.set()
        while gate.running:  # the thread ends, then its slot is back
            await asyncio.sleep(0.01)
        assert gate.admitted == 0
        assert await gate.run(lambda: 7) == 7
        gate.shutdown()

    asyncio.run(scenario())


def test_a_request_that_goes_away_cancels_its_job_and_the_slot_waits_for_the_thread() -> None:
    saw_cancel = threading.Event()
    started = threading.Event()
    finish = threading.Event()

    def cooperative() -> None:
        started.set()
        while True:
            try:
                check_deadline()
            except DeadlineExceeded:
                saw_cancel.set()
                finish.wait(10)  # still busy after seeing it: the slot must stay taken meanwhile
                raise
            time.sleep(0.005)

    async def scenario() -> None:
        gate = InferenceGate(concurrency=1, queue=0, timeout_s=30, retry_after_s=1)
        task = asyncio.create_task(gate.run(cooperative))
        while not started.is_set():
            await asyncio.sleep(0.005)
        task.cancel()  # the client went away
        with pytest.raises(asyncio.CancelledError):
            await task
        while not saw_cancel.is_set():
            await asyncio.sleep(0.005)
        assert gate.running == 1
        with pytest.raises(Overloaded):
            await gate.run(lambda: None)  # capacity 1, still held by the finishing job
        finish.set()
        while gate.running:
            await asyncio.sleep(0.01)
        assert await gate.run(lambda: "free") == "free"
        gate.shutdown()

    asyncio.run(scenario())


def test_a_job_whose_deadline_passed_in_the_queue_does_not_start() -> None:
    ran = []
    expired = Deadline(time.monotonic() - 1, 5)
    with pytest.raises(DeadlineExceeded):
        _start_unless_expired(expired, lambda: ran.append(True))
    assert not ran
    assert _start_unless_expired(Deadline.after(5), lambda: "ok") == "ok"


def test_cancelling_a_deadline_fires_hooks_once_and_late_hooks_at_once() -> None:
    deadline = Deadline.after(60)
    fired: list[str] = []
    with deadline.cancelling(lambda: fired.append("run")):
        assert deadline.remaining() > 0
        deadline.cancel()
        deadline.cancel()
    assert fired == ["run"]
    with deadline.cancelling(lambda: fired.append("late")):
        pass
    assert fired == ["run", "late"]
    with pytest.raises(DeadlineExceeded):
        deadline.check()
    finished = Deadline.after(60)
    with finished.cancelling(lambda: fired.append("after the block")):
        pass
    finished.cancel()  # the block is over: its hook is gone
    assert fired == ["run", "late"]
