"""RayExecutor without a cluster: the gate's deadline bounds the remote call and cancels it; a replica's domain
error comes back as itself (deploy/ray/atelier_serve.py)."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

from app.deadline import CURRENT_DEADLINE, Deadline
from app.errors import DeadlineExceeded, NoFaceFound, Overloaded
from app.gate import InferenceGate
from app.work import Work

pytest.importorskip("ray", reason="the `ray` extra is not installed")
from ray.exceptions import RayTaskError  # noqa: E402
from ray.serve.handle import DeploymentResponse  # noqa: E402

from deploy.ray.atelier_serve import RayExecutor, unwrap  # noqa: E402


class FakeResponse(DeploymentResponse):  # type: ignore[misc]
    """A call that answers after `delay` s, or raises `error`; records cancel() and the timeout it was given."""

    def __init__(self, delay: float = 0.0, error: BaseException | None = None) -> None:  # no super(): no Ray
        self.delay, self.error = delay, error
        self.cancelled_event = threading.Event()
        self.timeouts: list[float | None] = []

    def result(self, *, timeout_s: float | None = None, _skip_asyncio_check: bool = False) -> Any:
        self.timeouts.append(timeout_s)
        if self.cancelled_event.wait(min(self.delay, timeout_s or self.delay)):
            from ray.serve.exceptions import RequestCancelledError

            raise RequestCancelledError("cancelled")
        if self.delay > (timeout_s or self.delay):
            raise TimeoutError
        if self.error is not None:
            raise self.error
        return "done"

    def cancel(self) -> None:
        self.cancelled_event.set()


class FakeHandle:
    def __init__(self, response: FakeResponse) -> None:
        self.response = response
        self.calls: list[tuple[Any, ...]] = []
        self.run = self

    def remote(self, *args: Any) -> FakeResponse:
        self.calls.append(args)
        return self.response


def noop(pipelines: object, settings: object) -> str:
    return "local"


WORK: Work[str] = Work("detect", noop, ())


def test_the_remote_call_gets_what_is_left_of_the_deadline() -> None:
    handle = FakeHandle(FakeResponse())
    executor = RayExecutor({"detect": handle}, timeout_s=30)  # type: ignore[dict-item]
    CURRENT_DEADLINE.set(Deadline.after(5))
    try:
        assert executor(WORK) == "done"
    finally:
        CURRENT_DEADLINE.set(None)
    (work, remaining), = handle.calls
    assert work is WORK and 4 < remaining <= 5
    assert handle.response.timeouts[0] == remaining


def test_the_gate_deadline_cancels_the_ray_call() -> None:
    response = FakeResponse(delay=30)
    executor = RayExecutor({"detect": FakeHandle(response)}, timeout_s=0.3)  # type: ignore[dict-item]

    async def scenario() -> None:
        gate = InferenceGate(1, 0, 0.3, 1)
        started = time.monotonic()
        with pytest.raises(DeadlineExceeded):
            await gate.run(lambda: executor(WORK))
        assert time.monotonic() - started < 2
        gate.shutdown()  # waits for the job's thread: it ends once the call is cancelled

    asyncio.run(scenario())
    assert response.cancelled_event.is_set()


def test_a_domain_error_from_a_replica_is_raised_as_itself() -> None:
    original = NoFaceFound("no face in image_a")
    wrapped = RayTaskError("run", "traceback", original).as_instanceof_cause()
    assert unwrap(wrapped) is original
    executor = RayExecutor({"detect": FakeHandle(FakeResponse(error=wrapped))}, timeout_s=5)  # type: ignore[dict-item]
    with pytest.raises(NoFaceFound) as raised:
        executor(WORK)
    assert raised.value is original and raised.value.code == "NO_FACE"


def test_headers_survive_the_trip() -> None:
    """A replica's error crosses as a pickle of itself: its message and headers (Retry-After) stay."""
    import pickle

    error = Overloaded("busy", headers={"Retry-After": "1"})
    back = unwrap(RayTaskError("run", "tb", pickle.loads(pickle.dumps(error))).as_instanceof_cause())
    assert isinstance(back, Overloaded) and back.headers == {"Retry-After": "1"} and back.message == "busy"
