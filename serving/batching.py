"""Optional server-side batching: merges concurrent requests to one signature into one call."""

from __future__ import annotations

import collections
import concurrent.futures
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


@dataclasses.dataclass
class _Item:
    inputs: Arrays
    rows: int
    future: concurrent.futures.Future[Arrays]


class BatchQueue:
    """Batches calls of one signature function; all inputs and outputs have a batch dimension."""

    def __init__(
        self, name: str, fn: Callable[[Arrays], Arrays], settings: BatchingSettings
    ) -> None:
        """Starts the batching thread.

        Args:
          name: Description for logs and thread names (model/version/signature).
          fn: Runs the signature on merged inputs and returns its outputs.
          settings: Batch size and timeout.
        """
        self._name = name
        self._fn = fn
        self._settings = settings
        self._queue: collections.deque[_Item] = collections.deque()
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name=f"batch-{name}", daemon=True)
        self._thread.start()

    def submit(self, inputs: Arrays) -> Arrays:
        """Runs the inputs as part of a batch and returns this request's rows of the outputs.

        Args:
          inputs: Input name to array; every array has the same first dimension.

        Returns:
          Output name to array, for this request's rows only.

        Raises:
          UnavailableError: If the queue is closed or full.
          ServingError: If the signature fails on these inputs.
        """
        rows = int(next(iter(inputs.values())).shape[0])
        item = _Item(inputs, rows, concurrent.futures.Future())
        with self._cond:
            if self._closed:
                raise UnavailableError(f"Batch queue {self._name} is closed")
            if len(self._queue) >= self._settings.max_enqueued_batches:
                raise UnavailableError(f"Batch queue {self._name} is full")
            self._queue.append(item)
            self._cond.notify()
        return item.future.result()

    def close(self) -> None:
        """Runs what is queued, then stops the thread."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join(timeout=30)

    def _take_batch(self) -> list[_Item] | None:
        with self._cond:
            while not self._queue:
                if self._closed:
                    return None
                self._cond.wait()
            batch = [self._queue.popleft()]
            rows = batch[0].rows
            deadline = time.monotonic() + self._settings.batch_timeout_s
            while rows < self._settings.max_batch_size:
                if not self._queue:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0 or self._closed:
                        break
                    self._cond.wait(remaining)
                    continue
                if rows + self._queue[0].rows > self._settings.max_batch_size:
                    break
                item = self._queue.popleft()
                batch.append(item)
                rows += item.rows
            return batch

    def _loop(self) -> None:
        while True:
            batch = self._take_batch()
            if batch is None:
                return
            if len(batch) == 1:
                self._run_one(batch[0])
                continue
            try:
                merged = {
                    key: np.concatenate([item.inputs[key] for item in batch], axis=0)
                    for key in batch[0].inputs
                }
                outputs = self._fn(merged)
            except Exception:
                logger.info(
                    "Merged batch of %d failed in %s; running each alone", len(batch), self._name
                )
                for item in batch:
                    self._run_one(item)
                continue
            start = 0
            for item in batch:
                end = start + item.rows
                item.future.set_result({key: value[start:end] for key, value in outputs.items()})
                start = end

    def _run_one(self, item: _Item) -> None:
        try:
            item.future.set_result(self._fn(item.inputs))
        except ServingError as e:
            item.future.set_exception(e)
        except Exception as e:
            logger.exception("Batched call failed in %s", self._name)
            item.future.set_exception(e)
