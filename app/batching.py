"""Cross-request dynamic batching: concurrent calls of one net, with inputs of one shape, share one run.

A BatchingRunner wraps a loaded model and is itself a Runner (app.pipelines.Runner), so pipelines do not know
it is there. Each call's inputs (its *share*: one or more rows along the batch axis) join a queue per input
shape; the first share of a queue collects company for at most `timeout_s`, then stacks the queued shares
(up to `max_size` rows) into one onnxruntime run on its own thread and hands each share its rows of the
outputs. Leaders run on the callers' threads, so several batches of one net can run at once, as the calls
did before. A share with `max_size` rows or more runs at once, alone: it is a batch already.

Waiting only pays when someone can join. With `company` (the number of gated jobs running, app.gate) the
collector stops waiting as soon as every running job has a share in its queue, and does not wait at all when
its job is the only one: one client pays nothing for batching.

Deadlines stay per request (app.deadline). A call whose deadline passes while queued leaves the queue; one
whose deadline passes while its share is in a shared run stops waiting and drops its share, and the run goes
on for the others. A run is terminated only when every share in it has been dropped. A failed run fails every
share in it, each with its own InferenceFailed.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import onnxruntime as ort

from app import metrics
from app.deadline import Deadline, current_deadline
from app.errors import InferenceFailed

# A key per input shape: (name, per-row shape, dtype) of every input, in graph order.
ShapeKey = tuple[tuple[str, tuple[int, ...], str], ...]


class SharedRunner(Protocol):
    """What the batcher needs of a model (app.runtime.ModelSession has it)."""

    input_names: list[str]
    output_names: list[str]

    @property
    def id(self) -> str: ...

    def run(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]: ...

    def run_with_options(self, feeds: Mapping[str, np.ndarray], run_options: ort.RunOptions) -> list[np.ndarray]:
        ...


@dataclass(frozen=True)
class BatchPolicy:
    """How one deployment batches (Settings.batch_max_size, batch_timeout_ms)."""

    max_size: int = 1  # rows per run; 1 = batching off
    timeout_s: float = 0.0  # the longest a collecting share waits for company

    @property
    def enabled(self) -> bool:
        return self.max_size > 1


def batchable(entry: Mapping[str, Any]) -> bool:
    """Whether a manifest entry's net takes a batch: every input and output leads with the symbolic 'batch'."""
    tensors = [*entry.get("inputs", []), *entry.get("outputs", [])]
    return bool(tensors) and all((t.get("shape") or [None])[0] == "batch" for t in tensors)


@dataclass(eq=False)
class _Share:
    """One call's rows, from the moment it queues until its caller has its outputs (or has left)."""

    feeds: Mapping[str, np.ndarray]
    rows: int
    job: object  # who asked: the gated job's Deadline, or the share itself outside a job
    enqueued_at: float
    state: str = "queued"  # queued -> running -> done
    dropped: bool = False  # its caller's deadline passed: nobody wants its rows
    batch: _Batch | None = None
    outputs: list[np.ndarray] | None = None
    error: BaseException | None = None


@dataclass(eq=False)
class _Batch:
    shares: list[_Share]
    run_options: ort.RunOptions = field(default_factory=ort.RunOptions)


class BatchingRunner:
    """A Runner that stacks concurrent calls of `model` with equal per-row input shapes into one run."""

    def __init__(self, model: SharedRunner, policy: BatchPolicy, company: Callable[[], int] | None = None) -> None:
        self.model = model
        self.policy = policy
        self.company = company
        self.input_names = model.input_names
        self.output_names = model.output_names
        self._cond = threading.Condition()
        self._queues: dict[ShapeKey, deque[_Share]] = {}

    @property
    def id(self) -> str:
        return self.model.id

    def run(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        """Outputs in graph order, the rows of this call only: the same as the model's own run on `feeds`."""
        deadline = current_deadline()
        if deadline is not None:
            deadline.check()
        rows = _rows(feeds, self.input_names)
        if rows is None or rows >= self.policy.max_size:
            metrics.BATCH_SIZE.labels(model=self.id).observe(1)
            metrics.BATCH_WAIT_SECONDS.labels(model=self.id).observe(0.0)
            return self.model.run(feeds)  # alone, terminated by its own deadline as any unbatched run
        key = tuple((name, tuple(feeds[name].shape[1:]), feeds[name].dtype.str) for name in self.input_names)
        share = _Share(feeds=feeds, rows=rows, job=deadline or object(), enqueued_at=time.monotonic())
        with self._cond:
            queue = self._queues.setdefault(key, deque())
            queue.append(share)
            self._cond.notify_all()
        with self._dropped_when_cancelled(share, deadline):
            batch = self._await_turn(key, queue, share, deadline)
            if batch is not None:
                self._run(batch)
        if share.dropped and deadline is not None:
            deadline.check()  # cancelled, so this raises DeadlineExceeded
        if share.error is not None or share.outputs is None:
            raise InferenceFailed(f"model {self.id} failed on a batch of {_batch_rows(share)} rows: "
                                  f"{share.error}") from share.error
        return share.outputs

    # -- waiting

    @contextmanager
    def _dropped_when_cancelled(self, share: _Share, deadline: Deadline | None) -> Iterator[None]:
        if deadline is None:
            yield
            return
        with deadline.cancelling(lambda: self._drop(share)):
            yield

    def _drop(self, share: _Share) -> None:
        """The share's deadline was cancelled (from any thread): it leaves, and a run nobody wants stops."""
        with self._cond:
            share.dropped = True
            batch = share.batch
            if batch is not None and share.state == "running" and all(s.dropped for s in batch.shares):
                batch.run_options.terminate = True
            self._cond.notify_all()

    def _await_turn(self, key: ShapeKey, queue: deque[_Share], share: _Share, deadline: Deadline | None
                    ) -> _Batch | None:
        """Wait until the share's outputs are there (None) or it leads a batch (that batch, to run).

        queue: the one the share joined (a later one of the same key may replace it once it is empty)."""
        with self._cond:
            while True:
                if share.dropped:
                    if share.state == "queued":
                        self._leave(key, queue, share)
                    return None
                if share.state == "done":
                    return None
                if share.state == "queued" and queue[0] is share:  # the head of a queue collects its company
                    left = self._collection_time_left(queue, share)
                    if left <= 0.0:
                        return self._take_batch(key, queue)
                    self._cond.wait(left)
                else:
                    self._cond.wait(deadline.remaining() if deadline is not None else None)

    def _collection_time_left(self, queue: deque[_Share], head: _Share) -> float:
        """Seconds the head may still wait for company; 0 when the batch is full or nobody else can come."""
        if sum(s.rows for s in queue) >= self.policy.max_size:
            return 0.0
        if self.company is not None and len({id(s.job) for s in queue}) >= self.company():
            return 0.0  # every running job has a share here already (or this one is alone)
        return head.enqueued_at + self.policy.timeout_s - time.monotonic()

    def _take_batch(self, key: ShapeKey, queue: deque[_Share]) -> _Batch:
        """Pop the queue's first shares, up to max_size rows (always the head), as one batch."""
        shares = [queue.popleft()]
        rows = shares[0].rows
        while queue and rows + queue[0].rows <= self.policy.max_size:
            rows += queue[0].rows
            shares.append(queue.popleft())
        batch = _Batch(shares)
        for s in shares:
            s.state, s.batch = "running", batch
        self._forget_if_empty(key, queue)
        self._cond.notify_all()  # a share left behind is now the head and collects for the next batch
        return batch

    def _leave(self, key: ShapeKey, queue: deque[_Share], share: _Share) -> None:
        queue.remove(share)  # a share left as the new head collects from its own arrival
        self._forget_if_empty(key, queue)
        self._cond.notify_all()

    def _forget_if_empty(self, key: ShapeKey, queue: deque[_Share]) -> None:
        """Drop an empty queue: style images come in many sizes, and a queue per size ever seen would grow
        without end. Only shares in a queue use it, so nobody holds an empty one."""
        if not queue and self._queues.get(key) is queue:
            del self._queues[key]

    # -- running

    def _run(self, batch: _Batch) -> None:
        """Stack, run once, split back; every share of the batch is done afterwards, with outputs or the error."""
        started = time.monotonic()
        shares = batch.shares
        for s in shares:
            metrics.BATCH_WAIT_SECONDS.labels(model=self.id).observe(started - s.enqueued_at)
        metrics.BATCH_SIZE.labels(model=self.id).observe(len(shares))
        feeds = {name: (shares[0].feeds[name] if len(shares) == 1
                        else np.concatenate([s.feeds[name] for s in shares]))
                 for name in self.input_names}
        outputs: Sequence[np.ndarray] = ()
        error: BaseException | None = None
        try:
            outputs = self.model.run_with_options(feeds, batch.run_options)
        except Exception as exc:  # onnxruntime raises several unrelated types
            error = exc
        with self._cond:
            start = 0
            for s in shares:
                if error is None:
                    s.outputs = [np.asarray(o[start:start + s.rows]) for o in outputs]
                s.error = error
                start += s.rows
                s.state = "done"
            self._cond.notify_all()


def _rows(feeds: Mapping[str, np.ndarray], input_names: Sequence[str]) -> int | None:
    """The call's rows, or None when its inputs do not agree on one batch length (run it unbatched)."""
    if any(name not in feeds or np.ndim(feeds[name]) == 0 for name in input_names):
        return None
    lengths = {np.shape(feeds[name])[0] for name in input_names}
    if len(lengths) != 1:
        return None
    rows = lengths.pop()
    return rows if rows > 0 else None


def _batch_rows(share: _Share) -> int:
    return sum(s.rows for s in share.batch.shares) if share.batch is not None else share.rows
