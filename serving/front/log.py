"""The proxies' request log: a bounded queue of sampled calls and one writer thread.

The request thread only draws the sample and enqueues the bytes it already holds (a gRPC
message, a REST body); the writer thread turns them into a `PredictionLog`
(`serving.front.records`) and writes it with `serving.request_log.RotatingTFRecordSink`, the
server's own rotating, size-bounded TFRecord files. As in `serving.request_log.RequestLogger`,
a full queue, a failing disk or a record that cannot be built never delays or fails a request:
it is dropped and counted in `serving_request_log_dropped_total{reason}`.
"""

from __future__ import annotations

import logging
import queue
import random
import threading
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter
from tensorflow_serving.apis import prediction_log_pb2

from serving.request_log import CLOSED, QUEUE_FULL, WRITE_ERROR, RecordSink, RotatingTFRecordSink
from serving.settings import RequestLogSettings

logger = logging.getLogger(__name__)

# What the request thread enqueues: builds the record later, in the writer thread.
Builder = Callable[[], prediction_log_pb2.PredictionLog]


class RecordLog:
    """Samples calls, and writes the sampled ones from one thread through a bounded queue."""

    def __init__(
        self,
        settings: RequestLogSettings,
        registry: CollectorRegistry,
        sink: RecordSink | None = None,
        rng: random.Random | None = None,
    ) -> None:
        """Creates the log; `start` starts the writer thread.

        Args:
          settings: Where and how much to log (the server's `RequestLogSettings`).
          registry: Metrics registry the counters join.
          sink: Where records go (default: rotating TFRecord files in `settings.directory`).
          rng: Sampling source (tests pass a seeded one).
        """
        self.settings = settings
        self._sink = sink if sink is not None else RotatingTFRecordSink(settings)
        self._random = (rng if rng is not None else random.Random()).random
        self._rate = settings.sampling_rate
        self._queue: queue.Queue[Builder | None] = queue.Queue(maxsize=settings.queue_size)
        self._thread: threading.Thread | None = None
        self._closed = False
        self.sampled = Counter(
            "serving_request_log_sampled",
            "Requests sampled for the request log.",
            registry=registry,
        )
        self.written = Counter(
            "serving_request_log_written",
            "PredictionLog records written to the request log.",
            registry=registry,
        )
        self.dropped = Counter(
            "serving_request_log_dropped",
            "Sampled requests not logged, by reason (queue_full, write_error, closed).",
            ["reason"],
            registry=registry,
        )
        self._dropped = {r: self.dropped.labels(r) for r in (QUEUE_FULL, WRITE_ERROR, CLOSED)}

    def sample(self) -> bool:
        """Draws whether this call is logged (the only cost an unsampled call pays)."""
        return self._random() < self._rate

    def offer(self, build: Builder) -> None:
        """Enqueues a sampled call without waiting; drops it (counted) when the queue is full."""
        self.sampled.inc()
        if self._closed:
            self._dropped[CLOSED].inc()
            return
        try:
            self._queue.put_nowait(build)
        except queue.Full:
            self._dropped[QUEUE_FULL].inc()

    def start(self) -> None:
        """Starts the writer thread."""
        self._thread = threading.Thread(target=self._run, name="request-log", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            build = self._queue.get()
            if build is None:
                break
            try:
                self._sink.write(build().SerializeToString())
                self.written.inc()
            except Exception:  # Thread boundary: a bad record or a full disk must not stop it.
                self._dropped[WRITE_ERROR].inc()
                logger.warning("Request log: dropped a record", exc_info=True)
        try:
            self._sink.close()
        except OSError:
            logger.warning("Request log: closing the sink failed", exc_info=True)

    def close(self, timeout_s: float = 5.0) -> None:
        """Stops accepting, writes what is queued (up to `timeout_s`), and closes the sink."""
        if self._closed:
            return
        self._closed = True
        if self._thread is None:
            return
        try:
            self._queue.put(None, timeout=timeout_s)
        except queue.Full:
            logger.warning("Request log: writer did not drain in %.1fs", timeout_s)
            return
        self._thread.join(timeout_s)
