"""Request logging: sampling, PredictionLog records, rotation, sinks that never hold up requests."""

from __future__ import annotations

import errno
import glob
import os
import pathlib
import random
import threading
from collections.abc import Callable

import numpy as np
import pytest
import tensorflow as tf
from prometheus_client import CollectorRegistry
from tensorflow_serving.apis import prediction_log_pb2

from model_contract import CLASSIFY_METHOD
from serving.client import ModelRef, RestClient
from serving.request_log import RequestLogger, RotatingTFRecordSink
from serving.settings import RequestLogSettings
from tests.serving.conftest import MODEL, Served


def read_logs(directory: str) -> list[prediction_log_pb2.PredictionLog]:
    """Every PredictionLog in the folder's TFRecord files, oldest file first."""
    logs = []
    for path in sorted(glob.glob(os.path.join(directory, "*.tfrecord"))):
        for record in tf.data.TFRecordDataset(path).as_numpy_iterator():
            logs.append(prediction_log_pb2.PredictionLog.FromString(record))
    return logs


def dropped(registry: CollectorRegistry, reason: str) -> float:
    value = registry.get_sample_value("serving_request_log_dropped_total", {"reason": reason})
    return value or 0.0


def offer_predict(log: RequestLogger, rows: int = 1) -> None:
    log.offer_answer(
        MODEL,
        1,
        "serving_default",
        None,
        {"x": np.arange(rows, dtype=np.float32)},
        {"y": np.ones(rows, dtype=np.float32)},
    )


def test_sampled_fraction_follows_the_rng(tmp_path: pathlib.Path) -> None:
    settings = RequestLogSettings(directory=str(tmp_path), sampling_rate=0.25, queue_size=1000)
    registry = CollectorRegistry()
    log = RequestLogger(settings, registry, rng=random.Random(7))
    log.start()
    for _ in range(400):
        offer_predict(log)
    log.close()
    draws = random.Random(7)
    expected = sum(draws.random() < 0.25 for _ in range(400))
    assert 60 < expected < 140  # The seed gives a fraction near 0.25, not 0 or 1.
    assert len(read_logs(str(tmp_path))) == expected
    assert registry.get_sample_value("serving_request_log_written_total") == expected


def test_served_requests_parse_back_as_prediction_logs(
    tmp_path: pathlib.Path, serve_model: Callable[..., Served], examples: list[bytes]
) -> None:
    directory = str(tmp_path / "requests")
    served = serve_model(request_log=RequestLogSettings(directory=directory, sampling_rate=1.0))
    model = ModelRef(MODEL)
    predicted = served.client.predict(model, examples[:3])
    classified = served.client.classify(model, examples[:2])
    served.server.stop()

    logs = read_logs(directory)
    kinds = [log.WhichOneof("log_type") for log in logs]
    assert kinds == ["predict_log", "classify_log"]
    predict = logs[0].predict_log
    assert predict.request.model_spec.name == MODEL
    assert predict.request.model_spec.version.value == predicted.version
    assert list(predict.request.inputs["examples"].string_val) == examples[:3]
    logged = tf.make_ndarray(predict.response.outputs["probabilities"])
    np.testing.assert_allclose(logged, predicted.outputs["probabilities"])
    classify = logs[1].classify_log
    # Compared as messages: map entry order in serialized bytes differs between protobuf
    # implementations (3.20's Python/C++ and upb in protobuf >= 4).
    assert list(classify.request.input.example_list.examples) == [
        tf.train.Example.FromString(e) for e in examples[:2]
    ]
    logged_classes = [
        [(c.label, pytest.approx(c.score)) for c in row.classes]
        for row in classify.response.result.classifications
    ]
    assert logged_classes == classified.classes
    assert logs[1].log_metadata.sampling_config.sampling_rate == 1.0
    assert logs[1].log_metadata.model_spec.signature_name


def test_rest_requests_are_logged_the_same_way(
    tmp_path: pathlib.Path, serve_model: Callable[..., Served], examples: list[bytes]
) -> None:
    directory = str(tmp_path / "requests")
    served = serve_model(
        rest_port=0, request_log=RequestLogSettings(directory=directory, sampling_rate=1.0)
    )
    rest = RestClient(f"http://127.0.0.1:{served.server.rest_port}", timeout_s=30.0)
    try:
        answer = rest.predict(ModelRef(MODEL), examples[:2])
    finally:
        rest.close()
    served.server.stop()
    [log] = read_logs(directory)
    predict = log.predict_log
    assert list(predict.request.inputs["examples"].string_val) == examples[:2]
    # REST answers a single-output signature as unnamed `predictions` (TF Serving's row format).
    [(name, logged)] = predict.response.outputs.items()
    assert name == "probabilities"
    [returned] = answer.outputs.values()
    np.testing.assert_allclose(tf.make_ndarray(logged), returned, rtol=1e-6)


def test_rotation_bounds_the_total_size(tmp_path: pathlib.Path) -> None:
    settings = RequestLogSettings(
        directory=str(tmp_path), sampling_rate=1.0, max_file_bytes=4096, max_total_bytes=12288
    )
    # Two runs on one folder (a restart, or two replicas one after the other): the bound holds
    # over every file with the prefix, not only the current process's.
    for _ in range(2):
        log = RequestLogger(settings, CollectorRegistry())
        log.start()
        for _ in range(150):
            offer_predict(log, rows=8)
        log.close()
    files = sorted(glob.glob(os.path.join(tmp_path, "*.tfrecord")))
    sizes = [os.path.getsize(f) for f in files]
    assert len(files) >= 3
    assert all(size <= 4096 for size in sizes)
    assert sum(sizes) <= 12288
    # The newest records survive: the last file holds the last offers, intact.
    assert len(read_logs(str(tmp_path))) < 300
    assert read_logs(str(tmp_path))[-1].predict_log.request.model_spec.name == MODEL


class BlockedSink:
    """A sink whose writes wait until released (a stalled disk or network volume)."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.entered = threading.Event()
        self.records: list[bytes] = []

    def write(self, record: bytes) -> None:
        self.entered.set()
        self.release.wait()
        self.records.append(record)

    def close(self) -> None:
        pass


class FullDiskSink:
    """A sink on a full disk: every write fails with ENOSPC."""

    def write(self, record: bytes) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def close(self) -> None:
        pass


def test_a_blocked_writer_drops_instead_of_waiting(tmp_path: pathlib.Path) -> None:
    settings = RequestLogSettings(directory=str(tmp_path), sampling_rate=1.0, queue_size=2)
    registry = CollectorRegistry()
    sink = BlockedSink()
    log = RequestLogger(settings, registry, sink=sink)
    log.start()
    offer_predict(log)
    assert sink.entered.wait(10)  # The writer holds one record and is stuck in write().
    for _ in range(10):
        offer_predict(log)  # Returns at once: 2 fit in the queue, 8 are dropped.
    assert dropped(registry, "queue_full") == 8
    sink.release.set()
    log.close()
    assert len(sink.records) == 3


def test_a_full_disk_counts_drops_and_requests_still_succeed(
    tmp_path: pathlib.Path, serve_model: Callable[..., Served], examples: list[bytes]
) -> None:
    served = serve_model(
        request_log=RequestLogSettings(directory=str(tmp_path / "logs"), sampling_rate=1.0)
    )
    logger = served.server.request_log
    assert logger is not None
    logger._sink = FullDiskSink()  # The disk fills up after the server started.
    for _ in range(3):
        assert (
            served.client.predict(ModelRef(MODEL), examples[:2]).outputs["probabilities"].shape[0]
            == 2
        )
    served.server.stop()
    assert dropped(served.server.metrics.registry, "write_error") == 3
    assert b"serving_request_log_dropped_total" in served.server.metrics.exposition()


def test_requests_are_answered_while_the_writer_is_stuck(
    tmp_path: pathlib.Path, serve_model: Callable[..., Served], examples: list[bytes]
) -> None:
    settings = RequestLogSettings(directory=str(tmp_path / "logs"), sampling_rate=1.0, queue_size=2)
    served = serve_model(request_log=settings)
    logger = served.server.request_log
    assert logger is not None
    sink = BlockedSink()
    logger._sink = sink  # The log volume stalls (e.g. an unreachable network file system).
    model = ModelRef(MODEL)
    served.client.predict(model, examples[:1])
    assert sink.entered.wait(10)
    # Each answer arrives although the writer is stuck (a blocked request would fail on the
    # client's deadline): 2 wait in the queue, the rest are dropped.
    for _ in range(5):
        assert served.client.predict(model, examples[:1]).outputs["probabilities"].shape[0] == 1
    registry = served.server.metrics.registry
    assert dropped(registry, "queue_full") == 3
    sink.release.set()
    served.server.stop()
    assert len(sink.records) == 3


def test_a_real_full_device_is_a_write_error(tmp_path: pathlib.Path) -> None:
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full on this system")
    settings = RequestLogSettings(directory=str(tmp_path), sampling_rate=1.0)
    sink = RotatingTFRecordSink(settings)
    registry = CollectorRegistry()
    log = RequestLogger(settings, registry, sink=sink)
    original = sink._rotate

    # The next file the sink opens is a link to the always-full device.
    def rotate_onto_full_device() -> None:
        original()
        assert sink._path is not None and sink._writer is not None
        sink._writer.close()
        os.remove(sink._path)
        os.symlink("/dev/full", sink._path)
        sink._writer = tf.io.TFRecordWriter(sink._path)

    sink._rotate = rotate_onto_full_device  # type: ignore[method-assign]
    log.start()
    offer_predict(log)
    log.close()
    assert dropped(registry, "write_error") == 1


def test_method_names_the_log_type() -> None:
    from serving.request_log import Entry, to_prediction_log

    example = tf.train.Example()
    example.features.feature["fare"].float_list.value.append(3.0)
    serialized = np.array([example.SerializeToString()], dtype=object)
    entry = Entry(
        MODEL,
        3,
        "classify",
        CLASSIFY_METHOD,
        {"inputs": serialized},
        {"classes": np.array([[b"0", b"1"]], dtype=object), "scores": np.array([[0.3, 0.7]])},
        0.0,
    )
    log = to_prediction_log(entry, 0.5)
    assert log.WhichOneof("log_type") == "classify_log"
    assert log.classify_log.request.input.example_list.examples[0] == example
    assert [c.label for c in log.classify_log.response.result.classifications[0].classes] == [
        "0",
        "1",
    ]


def test_flags_build_the_settings_and_bad_values_name_the_field() -> None:
    import typed_config
    from serving import cli

    def settings(*flags: str) -> object:
        args = cli._parser().parse_args(["--model_base_path", "/m", *flags])
        return cli.settings_from_args(args).request_log

    assert settings() is None
    assert settings("--request_log_dir", "/logs", "--request_log_sampling_rate", "0.2") == (
        RequestLogSettings(directory="/logs", sampling_rate=0.2)
    )
    with pytest.raises(typed_config.ConfigError, match=r"request_log\.max_file_bytes"):
        settings("--request_log_dir", "/l", "--request_log_max_total_bytes", "4096")
