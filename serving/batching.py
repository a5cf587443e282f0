"""Optional server-side batching: merges concurrent requests to one signature into one call."""

from __future__ import annotations

import collections
import dataclasses
import logging
import threading
import time
from collections.abc import Callable

import numpy as np

from serving.errors import ServingError, UnavailableError
from serving.settings import BatchingSettings

logger = logging.getLogger(__name__)

Arrays = dict[str, np.ndarray]
# A signature call: inputs -> (outputs, the fused schema detector's flags or None).
BatchFn = Callable[[Arrays], tuple[Arrays, np.ndarray | None]]


@dataclasses.dataclass(frozen=True)
class Batched:
    """One request's share of a (possibly merged) call.

    Attributes:
      outputs: This request's rows of the outputs.
      flags: The detector's flags of the call that served these rows (None: none ran). For
        a merged call they cover every request in it.
      merged: How many requests that call served (1: this request alone).
    """

    outputs: Arrays
    flags: np.ndarray | None
    merged: int


class _Item:
    __slots__ = ("done", "error", "inputs", "result", "rows")

    def __init__(self, inputs: Arrays, rows: int) -> None:
        self.inputs = inputs
        self.rows = rows
        self.result: Batched | None = None
        self.error: BaseException | None = None
        self.done = False


class BatchQueue:
    """Batches calls of one signature function; all inputs and outputs have a batch dimension.

    No thread of its own: the request threads take turns as the runner ("leader"). A request
    arriving while no call runs becomes the runner at once and calls the signature in its own
    thread (no hand-off to another thread); requests arriving while a call runs wait in the
    queue, and the first of them runs the next call with the others merged in. One call runs at
    a time per signature, as with one batch thread. Like TF Serving's batch scheduler
    (tensorflow/core/kernels/batching_util/shared_batch_scheduler.h), a runner waits up to
    `batch_timeout_s` for more rows before calling with a batch below `max_batch_size`; with
    a timeout of 0 (TF Serving's default) it calls at once with what is queued.
    """

    def __init__(self, name: str, fn: BatchFn, settings: BatchingSettings) -> None:
        """Creates the queue.

        Args:
          name: Description for logs (model/version/signature).
          fn: Runs the signature on (merged) inputs; returns its outputs and detector flags.
          settings: Batch size, timeout and queue limit.
        """
        self._name = name
        self._fn = fn
        self._settings = settings
        self._queue: collections.deque[_Item] = collections.deque()
        self._cond = threading.Condition()
        self._running = False
        self._filling = False  # a runner waits for more rows (until its timeout)
        self._closed = False

    def submit(self, inputs: Arrays) -> Batched:
        """Runs the inputs as part of a batch and returns this request's rows of the outputs.

        Args:
          inputs: Input name to array; every array has the same first dimension.

        Returns:
          This request's rows of the outputs, with the flags of the call that served them.

        Raises:
          UnavailableError: If the queue is closed or full.
          ServingError: If the signature fails on these inputs.
        """
        item = _Item(inputs, int(next(iter(inputs.values())).shape[0]))
        with self._cond:
            if self._closed:
                raise UnavailableError(f"Batch queue {self._name} is closed")
            if len(self._queue) >= self._settings.max_enqueued_batches:
                raise UnavailableError(f"Batch queue {self._name} is full")
            self._queue.append(item)
            if self._filling:
                self._cond.notify_all()  # the runner waiting out its timeout counts the rows
            batch = self._wait_for_turn(item)
        if batch is not None:
            answers: list[tuple[_Item, Batched | None, BaseException | None]] = []
            try:
                answers = self._run(batch)
            finally:
                if not answers:  # the runner itself was interrupted: nobody waits forever
                    stopped = UnavailableError(f"Batch call in {self._name} was interrupted")
                    answers = [(queued, None, stopped) for queued in batch]
                with self._cond:  # one wake-up for all answers and the next runner
                    for answered, result, error in answers:
                        answered.result, answered.error, answered.done = result, error, True
                    self._running = False
                    self._cond.notify_all()
        if item.error is not None:
            raise item.error
        assert item.result is not None
        return item.result

    def _wait_for_turn(self, item: _Item) -> list[_Item] | None:
        """Under the lock: waits until `item` is answered (None) or it runs the next batch."""
        while not item.done:
            if not self._running and self._queue and self._queue[0] is item:
                self._running = True
                return self._take_batch()
            self._cond.wait()
        return None

    def _take_batch(self) -> list[_Item]:
        """Under the lock: waits up to the timeout for a full batch, then dequeues it."""
        max_rows = self._settings.max_batch_size
        deadline = time.monotonic() + self._settings.batch_timeout_s
        while not self._closed:
            rows = 0
            for queued in self._queue:
                rows += queued.rows
                if rows >= max_rows:
                    break
            remaining = deadline - time.monotonic()
            if rows >= max_rows or remaining <= 0:
                break
            self._filling = True
            self._cond.wait(remaining)
            self._filling = False
        batch = [self._queue.popleft()]
        rows = batch[0].rows
        while self._queue and rows + self._queue[0].rows <= max_rows:
            queued = self._queue.popleft()
            batch.append(queued)
            rows += queued.rows
        return batch

    def close(self, timeout_s: float = 30) -> None:
        """Refuses new requests; waits up to `timeout_s` for the queued ones to be answered."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            while (self._queue or self._running) and time.monotonic() < deadline:
                self._cond.wait(deadline - time.monotonic())

    def _run(self, batch: list[_Item]) -> list[tuple[_Item, Batched | None, BaseException | None]]:
        """Calls the signature on the batch (outside the lock); returns every item's answer."""
        if len(batch) == 1:
            return [self._run_one(batch[0])]
        try:
            merged = {
                key: np.concatenate([item.inputs[key] for item in batch], axis=0)
                for key in batch[0].inputs
            }
            outputs, flags = self._fn(merged)
        except Exception:
            logger.info(
                "Merged batch of %d failed in %s; running each alone", len(batch), self._name
            )
            return [self._run_one(item) for item in batch]
        answers: list[tuple[_Item, Batched | None, BaseException | None]] = []
        start = 0
        for item in batch:
            end = start + item.rows
            rows = {key: value[start:end] for key, value in outputs.items()}
            answers.append((item, Batched(rows, flags, len(batch)), None))
            start = end
        return answers

    def _run_one(self, item: _Item) -> tuple[_Item, Batched | None, BaseException | None]:
        try:
            outputs, flags = self._fn(item.inputs)
        except ServingError as e:
            return item, None, e
        except Exception as e:
            logger.exception("Batched call failed in %s", self._name)
            return item, None, e
        return item, Batched(outputs, flags, 1), None
