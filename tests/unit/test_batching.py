"""The cross-request batcher (app/batching.py) over a net whose runs the test controls.

Timing in these tests is only ever a lower bound (a collector waits at least its timeout) or a generous
upper bound on something that should not wait at all; nothing depends on how fast the machine is.
"""

from __future__ import annotations

import contextvars
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import onnxruntime as ort
import pytest

from app import metrics
from app.batching import BatchingRunner, BatchPolicy, batchable
from app.deadline import CURRENT_DEADLINE, Deadline
from app.errors import DeadlineExceeded, InferenceFailed

LONG = 30.0  # a timeout no test waits for: reaching it means the batcher waited when it should not have


class ControlledNet:
    """y = 10 * x + row index within the run, so each caller can tell its rows came back, in order, from one
    run or another. Runs can be held until released, and made to fail."""

    id = "controlled"
    input_names = ["x", "k"]
    output_names = ["y", "k2"]

    def __init__(self, hold: threading.Event | None = None, fail: bool = False) -> None:
        self.hold = hold
        self.fail = fail
        self.runs: list[int] = []  # rows of each shared (batcher) run
        self.batches: list[list[float]] = []  # each shared run's rows, by their first value
        self.direct: list[int] = []  # rows of each run the batcher passed straight through
        self.options: list[ort.RunOptions] = []
        self.started = threading.Event()

    def run(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        self.direct.append(len(feeds["x"]))
        return self._compute(feeds)

    def run_with_options(self, feeds: Mapping[str, np.ndarray], run_options: ort.RunOptions) -> list[np.ndarray]:
        self.runs.append(len(feeds["x"]))
        self.batches.append([float(v) for v in feeds["x"][:, 0]])
        self.options.append(run_options)
        self.started.set()
        if self.hold is not None:
            self.hold.wait(LONG)
        if self.fail:
            raise RuntimeError("the net broke")
        return self._compute(feeds)

    @staticmethod
    def _compute(feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        x = feeds["x"]
        return [x * 10.0, feeds["k"] * 2]


def share(value: float, rows: int = 1, width: int = 3) -> dict[str, np.ndarray]:
    return {"x": np.full((rows, width), value, np.float32), "k": np.full((rows,), int(value), np.int64)}


def call_in_job(runner: BatchingRunner, feeds: Mapping[str, np.ndarray], deadline: Deadline | None = None
                ) -> list[np.ndarray]:
    """Call the runner as a gated job would: with the job's deadline in a context of its own."""
    context = contextvars.copy_context()
    context.run(CURRENT_DEADLINE.set, deadline)
    return context.run(runner.run, feeds)


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            raise AssertionError("condition not reached")
        time.sleep(0.002)


def queued(runner: BatchingRunner) -> int:
    with runner._cond:
        return sum(len(q) for q in runner._queues.values())


def test_concurrent_calls_share_one_run_and_get_their_own_rows() -> None:
    net = ControlledNet()
    runner = BatchingRunner(net, BatchPolicy(max_size=6, timeout_s=LONG), company=lambda: 3)
    with ThreadPoolExecutor(3) as pool:
        futures = [pool.submit(call_in_job, runner, share(v, rows), Deadline.after(LONG))
                   for v, rows in ((1.0, 1), (2.0, 2), (3.0, 3))]
        results = [f.result(timeout=LONG) for f in futures]
    assert net.runs == [6] and net.direct == []  # three jobs, all queued: one run at once, no timeout waited
    for (v, rows), (y, k2) in zip(((1.0, 1), (2.0, 2), (3.0, 3)), results, strict=True):
        np.testing.assert_array_equal(y, np.full((rows, 3), v * 10.0, np.float32))
        np.testing.assert_array_equal(k2, np.full((rows,), int(v) * 2, np.int64))


def test_shapes_are_batched_apart() -> None:
    net = ControlledNet()
    runner = BatchingRunner(net, BatchPolicy(max_size=8, timeout_s=0.2), company=lambda: 2)
    with ThreadPoolExecutor(2) as pool:
        narrow = pool.submit(call_in_job, runner, share(1.0, width=3), Deadline.after(LONG))
        wide = pool.submit(call_in_job, runner, share(2.0, width=5), Deadline.after(LONG))
        assert narrow.result(LONG)[0].shape == (1, 3) and wide.result(LONG)[0].shape == (1, 5)
    assert sorted(net.runs) == [1, 1]


def test_a_lone_job_does_not_wait_for_company() -> None:
    net = ControlledNet()
    runner = BatchingRunner(net, BatchPolicy(max_size=8, timeout_s=LONG), company=lambda: 1)
    start = time.monotonic()
    runner.run(share(1.0))
    assert time.monotonic() - start < LONG / 2 and net.runs == [1]


def test_collector_waits_its_timeout_for_company_then_runs_alone() -> None:
    net = ControlledNet()
    timeout = 0.05
    runner = BatchingRunner(net, BatchPolicy(max_size=8, timeout_s=timeout), company=lambda: 4)
    start = time.monotonic()
    y, _ = runner.run(share(1.0))
    assert time.monotonic() - start >= timeout
    assert net.runs == [1] and y.shape == (1, 3)


def test_a_call_arriving_within_the_timeout_joins_the_collecting_run() -> None:
    net = ControlledNet()
    runner = BatchingRunner(net, BatchPolicy(max_size=8, timeout_s=LONG), company=lambda: 2)
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(call_in_job, runner, share(1.0), Deadline.after(LONG))
        wait_until(lambda: queued(runner) == 1)
        second = pool.submit(call_in_job, runner, share(2.0), Deadline.after(LONG))
        first.result(LONG), second.result(LONG)
    assert net.runs == [2]


def test_full_batch_runs_at_once_and_the_rest_collect_for_the_next() -> None:
    hold = threading.Event()
    net = ControlledNet(hold=hold)
    runner = BatchingRunner(net, BatchPolicy(max_size=2, timeout_s=0.2), company=lambda: 5)
    with ThreadPoolExecutor(5) as pool:
        futures = []
        for v in range(5):
            futures.append(pool.submit(call_in_job, runner, share(float(v)), Deadline.after(LONG)))
            if v == 0:
                wait_until(lambda: queued(runner) == 1)  # the first share is the first in line
        wait_until(lambda: len(net.runs) == 2)  # two full runs of two started while the fifth collects
        hold.set()
        values = [f.result(LONG)[0][0, 0] for f in futures]
    assert values == [0.0, 10.0, 20.0, 30.0, 40.0]  # nobody starved, every caller its own rows
    assert net.runs[:2] == [2, 2] and sum(net.runs) == 5 and max(net.runs) <= 2


def test_first_come_first_served_within_a_shape() -> None:
    hold = threading.Event()
    net = ControlledNet(hold=hold)
    runner = BatchingRunner(net, BatchPolicy(max_size=2, timeout_s=LONG), company=lambda: 9)
    with ThreadPoolExecutor(4) as pool:
        futures = []
        for v in range(4):
            futures.append(pool.submit(call_in_job, runner, share(float(v)), Deadline.after(LONG)))
            wait_until(lambda v=v: queued(runner) + sum(net.runs) == v + 1)  # in line before the next comes
        hold.set()
        for f in futures:
            f.result(LONG)
    assert net.batches == [[0.0, 1.0], [2.0, 3.0]]


def test_calls_of_max_size_rows_or_unequal_batches_run_alone_and_at_once() -> None:
    net = ControlledNet()
    runner = BatchingRunner(net, BatchPolicy(max_size=4, timeout_s=LONG), company=lambda: 9)
    y, _ = runner.run(share(1.0, rows=4))
    assert y.shape == (4, 3)
    mismatched = {"x": np.zeros((2, 3), np.float32), "k": np.zeros((3,), np.int64)}
    runner.run(mismatched)
    assert net.direct == [4, 2] and net.runs == []


def test_an_expired_job_is_refused_before_it_queues() -> None:
    net = ControlledNet()
    runner = BatchingRunner(net, BatchPolicy(max_size=4, timeout_s=LONG))
    expired = Deadline.after(LONG)
    expired.cancel()
    with pytest.raises(DeadlineExceeded):
        call_in_job(runner, share(1.0), expired)
    assert net.runs == [] and queued(runner) == 0


def test_late_request_drops_its_share_and_the_shared_run_goes_on() -> None:
    hold = threading.Event()
    net = ControlledNet(hold=hold)
    runner = BatchingRunner(net, BatchPolicy(max_size=2, timeout_s=LONG), company=lambda: 2)
    patient, late = Deadline.after(LONG), Deadline.after(LONG)
    with ThreadPoolExecutor(2) as pool:
        kept = pool.submit(call_in_job, runner, share(1.0), patient)
        dropped = pool.submit(call_in_job, runner, share(2.0), late)
        assert net.started.wait(LONG)
        late.cancel()  # what the gate does when the request's deadline passes
        with pytest.raises(DeadlineExceeded):
            dropped.result(LONG)  # answered while the shared run is still held
        assert not kept.done() and net.options[0].terminate is False
        hold.set()
        np.testing.assert_array_equal(kept.result(LONG)[0], np.full((1, 3), 10.0, np.float32))
    assert net.runs == [2]


def test_a_run_whose_every_share_was_dropped_is_terminated() -> None:
    hold = threading.Event()
    net = ControlledNet(hold=hold)
    runner = BatchingRunner(net, BatchPolicy(max_size=2, timeout_s=LONG), company=lambda: 2)
    first, second = Deadline.after(LONG), Deadline.after(LONG)
    with ThreadPoolExecutor(2) as pool:
        futures = [pool.submit(call_in_job, runner, share(1.0), first),
                   pool.submit(call_in_job, runner, share(2.0), second)]
        assert net.started.wait(LONG)
        first.cancel()
        assert net.options[0].terminate is False
        second.cancel()
        assert net.options[0].terminate is True  # onnxruntime would now stop the run
        hold.set()
        for future in futures:
            with pytest.raises(DeadlineExceeded):
                future.result(LONG)


def test_a_queued_share_whose_deadline_passes_leaves_the_queue() -> None:
    net = ControlledNet()
    runner = BatchingRunner(net, BatchPolicy(max_size=8, timeout_s=0.3), company=lambda: 9)
    leader, follower = Deadline.after(LONG), Deadline.after(LONG)
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(call_in_job, runner, share(1.0), leader)
        wait_until(lambda: queued(runner) == 1)
        second = pool.submit(call_in_job, runner, share(2.0), follower)
        wait_until(lambda: queued(runner) == 2)
        follower.cancel()
        with pytest.raises(DeadlineExceeded):
            second.result(LONG)
        assert first.result(LONG)[0].shape == (1, 3)
    assert net.runs == [1]  # the collector ran with its own share only


def test_a_collector_whose_deadline_passes_hands_the_queue_on() -> None:
    net = ControlledNet()
    runner = BatchingRunner(net, BatchPolicy(max_size=8, timeout_s=0.2), company=lambda: 9)
    leader, follower = Deadline.after(LONG), Deadline.after(LONG)
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(call_in_job, runner, share(1.0), leader)
        wait_until(lambda: queued(runner) == 1)
        second = pool.submit(call_in_job, runner, share(2.0), follower)
        wait_until(lambda: queued(runner) == 2)
        leader.cancel()
        with pytest.raises(DeadlineExceeded):
            first.result(LONG)
        np.testing.assert_array_equal(second.result(LONG)[0], np.full((1, 3), 20.0, np.float32))
    assert net.runs == [1]


def test_a_failed_run_fails_every_share_with_inference_failed() -> None:
    net = ControlledNet(fail=True)
    runner = BatchingRunner(net, BatchPolicy(max_size=3, timeout_s=LONG), company=lambda: 3)
    with ThreadPoolExecutor(3) as pool:
        futures = [pool.submit(call_in_job, runner, share(float(v)), Deadline.after(LONG)) for v in range(3)]
        for future in futures:
            with pytest.raises(InferenceFailed, match="the net broke"):
                future.result(LONG)
    assert net.runs == [3]


def test_metrics_count_calls_per_run_and_their_wait() -> None:
    def count(name: str) -> float:
        value = metrics.REGISTRY.get_sample_value(name, {"model": "controlled"})
        return value or 0.0

    before_runs, before_calls = count("atelier_batch_size_count"), count("atelier_batch_size_sum")
    before_waits = count("atelier_batch_wait_seconds_count")
    net = ControlledNet()
    runner = BatchingRunner(net, BatchPolicy(max_size=2, timeout_s=LONG), company=lambda: 2)
    with ThreadPoolExecutor(2) as pool:
        for f in [pool.submit(call_in_job, runner, share(1.0), Deadline.after(LONG)) for _ in range(2)]:
            f.result(LONG)
    assert count("atelier_batch_size_count") - before_runs == 1
    assert count("atelier_batch_size_sum") - before_calls == 2
    assert count("atelier_batch_wait_seconds_count") - before_waits == 2


def test_batchable_reads_the_manifest_contract() -> None:
    assert batchable({"inputs": [{"shape": ["batch", 3, 150, 150]}], "outputs": [{"shape": ["batch", 128]}]})
    assert not batchable({"inputs": [{"shape": [1, 3, "height", "width"]}], "outputs": [{"shape": [1, 4]}]})
    assert not batchable({"inputs": [{"shape": ["batch", 3]}], "outputs": [{"shape": [1, 100]}]})
    assert not batchable({})


def test_queues_of_past_shapes_are_forgotten() -> None:
    net = ControlledNet()
    runner = BatchingRunner(net, BatchPolicy(max_size=4, timeout_s=0.0))
    for width in range(1, 20):  # style images come in many sizes
        runner.run(share(1.0, width=width))
    assert runner._queues == {} and len(net.runs) == 19


def test_auto_batch_size_is_off_on_the_cpu_and_on_for_a_gpu() -> None:
    from app.config import GPU_BATCH_MAX_SIZE, Settings

    assert Settings().batch_policy(gpu=False).max_size == 1 and not Settings().batch_policy(gpu=False).enabled
    assert Settings().batch_policy(gpu=True).max_size == GPU_BATCH_MAX_SIZE
    explicit = Settings(batch_max_size=8, batch_timeout_ms=5)
    assert explicit.batch_policy(gpu=False) == BatchPolicy(max_size=8, timeout_s=0.005)
