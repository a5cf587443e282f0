"""Sampled request logging: PredictionLog records in rotating TFRecord files, off the request path.

Modelled on TF Serving's request logging (`tensorflow_serving/core/server_request_logger.cc`,
`core/request_logger.cc`, `apis/prediction_log.proto`, `config/logging_config.proto`): a
request is sampled with probability `sampling_rate`, and its request and response are written
as one `PredictionLog` (PredictLog, ClassifyLog or RegressLog). Unlike TF Serving, which writes
from the request thread through a pluggable LogCollector, the request thread here only draws
the sample and enqueues references to the arrays it already holds; one writer thread builds the
protos and writes them. A full queue, a failing or a slow sink never fails or delays a request:
the record is dropped and `serving_request_log_dropped_total{reason}` counts it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import queue
import random
import re
import socket
import threading
import time
from collections.abc import Callable, Mapping
from typing import Protocol

import numpy as np
import tensorflow as tf
from prometheus_client import CollectorRegistry, Counter
from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

from model_contract import CLASSIFY_METHOD, REGRESS_METHOD
from serving import tensors
from serving.service import classification_rows, regression_values
from serving.settings import RequestLogSettings

logger = logging.getLogger(__name__)

SUFFIX = ".tfrecord"
# TFRecord framing around each record: length (8 bytes) + its CRC (4) + data CRC (4).
_FRAMING_BYTES = 16
QUEUE_FULL = "queue_full"
WRITE_ERROR = "write_error"
CLOSED = "closed"


@dataclasses.dataclass(frozen=True)
class Entry:
    """What the request thread hands to the writer: references, no copies or protos."""

    model: str
    version: int
    signature: str
    method: str | None
    inputs: Mapping[str, np.ndarray]
    outputs: Mapping[str, np.ndarray]
    timestamp: float


class RecordSink(Protocol):
    """Where serialized PredictionLogs go (the rotating files; tests pass slow or full ones)."""

    def write(self, record: bytes) -> None:
        """Writes one record (may block or raise OSError)."""

    def close(self) -> None:
        """Flushes and closes."""


class RotatingTFRecordSink:
    """TFRecord files of at most `max_file_bytes`, the folder kept under `max_total_bytes`.

    Names sort by age (`<prefix>.<start ms, 13 digits>.<host>.<seq>.tfrecord`; the host name
    keeps replicas sharing one volume apart). Room is made when a file is started: the oldest
    files with the prefix, whoever wrote them, are deleted until the folder plus one full new
    file fits. Each record is flushed, so a reader sees every complete record of the open file.
    """

    def __init__(self, settings: RequestLogSettings) -> None:
        """Creates the folder; the first file is opened by the first write."""
        self._settings = settings
        os.makedirs(settings.directory, exist_ok=True)
        self._host = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname()) or "host"
        self._writer: tf.io.TFRecordWriter | None = None
        self._path: str | None = None
        self._bytes = 0
        self._seq = 0

    def _files(self) -> list[str]:
        prefix = self._settings.filename_prefix + "."
        names = [
            n
            for n in os.listdir(self._settings.directory)
            if n.startswith(prefix) and n.endswith(SUFFIX)
        ]
        return [os.path.join(self._settings.directory, n) for n in sorted(names)]

    def _make_room(self) -> None:
        """Deletes the oldest files until the folder has room for one full new file."""
        sizes = []
        for path in self._files():
            with contextlib.suppress(FileNotFoundError):  # Deleted by another replica.
                sizes.append((path, os.path.getsize(path)))
        total = sum(size for _, size in sizes)
        for path, size in sizes:
            if total + self._settings.max_file_bytes <= self._settings.max_total_bytes:
                break
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)
            total -= size

    def _rotate(self) -> None:
        self.close()
        self._make_room()
        self._seq += 1
        stamp = int(time.time() * 1000)
        name = f"{self._settings.filename_prefix}.{stamp:013d}.{self._host}.{self._seq:06d}"
        self._path = os.path.join(self._settings.directory, name + SUFFIX)
        self._writer = tf.io.TFRecordWriter(self._path)
        self._bytes = 0

    def write(self, record: bytes) -> None:
        """Writes one record, starting a new file first when this one would grow too big."""
        size = len(record) + _FRAMING_BYTES
        if size > self._settings.max_file_bytes:
            raise OSError(f"record of {size} bytes exceeds max_file_bytes")
        if self._writer is None or self._bytes + size > self._settings.max_file_bytes:
            self._rotate()
        assert self._writer is not None
        try:
            self._writer.write(record)
            self._writer.flush()
        except tf.errors.OpError as e:  # e.g. disk full: TF reports it as an OpError.
            raise OSError(f"cannot write {self._path}: {e.message}") from e
        self._bytes += size

    def close(self) -> None:
        """Closes the current file."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def _spec(entry: Entry) -> model_pb2.ModelSpec:
    spec = model_pb2.ModelSpec(name=entry.model, signature_name=entry.signature)
    spec.version.value = entry.version
    return spec


def _examples(entry: Entry) -> list[tf.train.Example]:
    serialized = next(iter(entry.inputs.values()))
    return [tf.train.Example.FromString(bytes(s)) for s in np.ravel(serialized)]


def to_prediction_log(entry: Entry, sampling_rate: float) -> prediction_log_pb2.PredictionLog:
    """Builds the PredictionLog of one answered request (in the writer thread).

    Classify/Regress requests carry serialized tf.Examples: logged as an `example_list`, the
    way TF Serving logs the ClassificationRequest it received. Predict requests log their input
    tensors as TensorProtos (a string tensor of serialized examples stays one).
    """
    log = prediction_log_pb2.PredictionLog()
    log.log_metadata.model_spec.CopyFrom(_spec(entry))
    log.log_metadata.sampling_config.sampling_rate = sampling_rate
    if entry.method == CLASSIFY_METHOD:
        classify = log.classify_log
        classify.request.model_spec.CopyFrom(_spec(entry))
        classify.request.input.example_list.examples.extend(_examples(entry))
        classify.response.model_spec.CopyFrom(_spec(entry))
        for labels, scores in classification_rows(entry.outputs):
            row = classify.response.result.classifications.add()
            for label, score in zip(labels, scores, strict=True):
                row.classes.add(label=label, score=score)
    elif entry.method == REGRESS_METHOD:
        regress = log.regress_log
        regress.request.model_spec.CopyFrom(_spec(entry))
        regress.request.input.example_list.examples.extend(_examples(entry))
        regress.response.model_spec.CopyFrom(_spec(entry))
        for value in regression_values(entry.outputs):
            regress.response.result.regressions.add(value=value)
    else:
        predict = log.predict_log
        predict.request.CopyFrom(predict_pb2.PredictRequest(model_spec=_spec(entry)))
        for name, array in entry.inputs.items():
            predict.request.inputs[name].CopyFrom(tensors.to_tensor_proto(array))
        predict.response.model_spec.CopyFrom(_spec(entry))
        for name, array in entry.outputs.items():  # as answered (`InferenceService.predict`)
            predict.response.outputs[name].CopyFrom(tensors.to_response_proto(array))
    return log


# What `RecordLog.offer` enqueues: builds the record later, in the writer thread.
Builder = Callable[[], prediction_log_pb2.PredictionLog]


class RecordLog:
    """Samples calls, and writes the sampled ones from one thread through a bounded queue.

    The one writer behind both the server's own request log (`RequestLogger`) and the
    request-logging front and KServe sink (`serving.front`, `serving.kserve_sink`): the request
    thread only draws the sample and enqueues a builder over what it already holds; the writer
    thread builds the `PredictionLog` and writes it. A full queue, a failing disk or a record
    that cannot be built never delays or fails a request: it is dropped and counted.
    """

    def __init__(
        self,
        settings: RequestLogSettings,
        registry: CollectorRegistry,
        sink: RecordSink | None = None,
        rng: random.Random | None = None,
    ) -> None:
        """Creates the log; `start` starts the writer thread.

        Args:
          settings: Where and how much to log.
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


class RequestLogger(RecordLog):
    """The server's request log: answered requests as TF Serving's `PredictionLog`s."""

    def offer_answer(
        self,
        model: str,
        version: int,
        signature: str,
        method: str | None,
        inputs: Mapping[str, np.ndarray],
        outputs: Mapping[str, np.ndarray],
    ) -> None:
        """Called by the request thread once answered: samples, then enqueues without waiting."""
        if not self.sample():
            return
        entry = Entry(model, version, signature, method, inputs, outputs, time.time())
        rate = self._rate
        self.offer(lambda: to_prediction_log(entry, rate))
