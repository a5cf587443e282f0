"""The request-logging front, end to end: the manifests' pod run here, real clients through it.

`python -m serving` stands in for tensorflow_model_server with the Deployment's own args, and
the front runs with its container's command line (tests/serving/support/front_pod.py); our
gRPC and REST clients and TFX's own taxi REST client call the front's ports.
"""

from __future__ import annotations

import glob
import pathlib
import threading
import time
from collections.abc import Iterator

import grpc
import pytest
import tensorflow as tf
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tensorflow_serving.apis import prediction_log_pb2

from operations import monitor
from serving.client import ClientSettings, ModelRef, PredictionClient, RestClient, is_code
from serving.errors import Code, ServingError
from serving.front import records
from serving.front.server import Front
from serving.front.settings import FrontSettings
from serving.settings import RequestLogSettings
from tests.serving.conftest import MODEL, install_version
from tests.serving.support import front_pod

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def pod(
    tmp_path_factory: pytest.TempPathFactory, model_library: dict[int, str]
) -> Iterator[front_pod.Pod]:
    """The pvc overlay's pod, every sampled call logged (sampling rate 1)."""
    root = tmp_path_factory.mktemp("pod")
    models = root / "models"
    install_version(model_library, 1, str(models / MODEL), 1)
    started = front_pod.start_pod(
        root, str(models), front_flags={"request_log_sampling_rate": "1.0"}
    )
    yield started
    started.stop()


def read_logs(directory: str) -> list[prediction_log_pb2.PredictionLog]:
    """The PredictionLogs in the folder's files."""
    logs = []
    for path in sorted(glob.glob(f"{directory}/*.tfrecord")):
        for record in tf.data.TFRecordDataset(path).as_numpy_iterator():
            logs.append(prediction_log_pb2.PredictionLog.FromString(record))
    return logs


def test_clients_are_answered_and_sampled_calls_are_logged_as_prediction_logs(
    pod: front_pod.Pod, examples: list[bytes]
) -> None:
    import json
    import urllib.request

    from tfx.examples.chicago_taxi_pipeline.serving import chicago_taxi_client

    model = ModelRef(MODEL)
    grpc_client = PredictionClient(ClientSettings(pod.grpc, deadline_s=30, max_retries=0))
    direct = PredictionClient(ClientSettings(pod.backend_grpc, deadline_s=30, max_retries=0))
    rest = RestClient(pod.rest, timeout_s=30)
    try:
        # Answers through the front are the backend's own.
        through = grpc_client.predict(model, examples[:3])
        assert through.version == 1
        assert through.outputs.keys() == direct.predict(model, examples[:3]).outputs.keys()
        assert len(grpc_client.classify(model, examples[:2]).classes) == 2
        assert len(grpc_client.regress(model, examples[:2]).values) == 2
        assert grpc_client.model_status(model)[0]["state"] == "AVAILABLE"
        assert grpc_client.metadata(model)[0] == 1
        assert rest.predict(model, examples[:2]).outputs
        assert len(rest.classify(model, examples[:2]).classes) == 2
        assert len(rest.regress(model, examples[:1]).values) == 1
        assert rest.model_status(model)[0]["state"] == "AVAILABLE"
        # TFX's own taxi client (tfx/examples/chicago_taxi_pipeline/serving), against the front.
        host, port = pod.rest.removeprefix("http://").split(":")
        chicago_taxi_client._do_local_inference(host, port, examples[3:5])
        # Errors pass through with the backend's code and text, and are not logged.
        for client in (grpc_client, direct):
            with pytest.raises(ServingError) as error:
                client.predict(ModelRef("no_such_model"), examples[:1])
            assert is_code(error.value, Code.NOT_FOUND)
        texts = []
        for base in (pod.rest, pod.backend_rest):
            request = urllib.request.Request(
                base + "/v1/models/no_such_model:predict", data=b"{}", method="POST"
            )
            with pytest.raises(urllib.error.HTTPError) as http_error:
                urllib.request.urlopen(request, timeout=10)
            texts.append((http_error.value.code, json.loads(http_error.value.read())))
        assert texts[0] == texts[1] and texts[0][0] == 404
        # Prometheus scraping on 8501 reaches TF Serving's metrics through the front.
        with urllib.request.urlopen(pod.rest + "/monitoring/prometheus/metrics", timeout=10) as r:
            assert r.status == 200
    finally:
        grpc_client.close()
        direct.close()
        rest.close()

    # 3 gRPC + 3 REST + TFX's one answered calls (errors, status and metadata are not logged).
    pod.wait_written(7)
    assert pod.counter("serving_request_log_dropped_total") == 0
    logs = read_logs(pod.request_logs)
    kinds = sorted(log.WhichOneof("log_type") for log in logs)
    assert kinds == ["classify_log"] * 2 + ["predict_log"] * 3 + ["regress_log"] * 2
    for log in logs:
        assert log.log_metadata.model_spec.name == MODEL
        assert log.log_metadata.model_spec.version.value == 1
        assert log.log_metadata.sampling_config.sampling_rate == 1.0
    grpc_predict = next(log for log in logs if log.predict_log.response.outputs)
    assert monitor.examples_of(grpc_predict) == examples[:3]
    # Every example any client sent reaches the monitor's reader.
    seen = [e for log in logs for e in monitor.examples_of(log)]
    assert set(examples[:5]) <= set(seen)
    assert len(seen) == 3 + 2 + 2 + 2 + 2 + 1 + 2
    logged_files = glob.glob(f"{pod.request_logs}/prediction_log.*.tfrecord")
    assert logged_files and monitor.read_window(logged_files)[0] == len(logs)


def test_unparsable_bytes_pass_through_to_the_backend(pod: front_pod.Pod) -> None:
    """The front never parses: the backend answers what it cannot read, code and text."""
    answers = []
    for address in (pod.grpc, pod.backend_grpc):
        with grpc.insecure_channel(address) as channel:
            call = channel.unary_unary(records.PREDICT)
            with pytest.raises(grpc.RpcError) as error:
                call(b"\xff\xff not a PredictRequest", timeout=10)
            answers.append((error.value.code(), error.value.details()))  # type: ignore[attr-defined]
    assert answers[0] == answers[1]
    assert (
        answers[0][0] == grpc.StatusCode.INTERNAL
        or answers[0][0] == grpc.StatusCode.INVALID_ARGUMENT
    )


def test_health_checks_reach_tf_serving_through_the_front(pod: front_pod.Pod) -> None:
    with grpc.insecure_channel(pod.grpc) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        answer = stub.Check(health_pb2.HealthCheckRequest(service="PredictionService"), timeout=10)
        assert answer.status == health_pb2.HealthCheckResponse.SERVING


class StalledSink:
    """A sink whose disk never answers (writes block until released)."""

    def __init__(self) -> None:
        self.release = threading.Event()

    def write(self, record: bytes) -> None:
        self.release.wait(60)

    def close(self) -> None:
        pass


def test_a_stalled_log_neither_blocks_nor_fails_calls(
    pod: front_pod.Pod, examples: list[bytes], tmp_path: pathlib.Path
) -> None:
    settings = FrontSettings(
        backend_grpc=pod.backend_grpc,
        grpc_port=0,
        rest_port=0,
        backend_rest=pod.backend_rest,
        request_log=RequestLogSettings(directory=str(tmp_path), sampling_rate=1.0, queue_size=2),
    )
    sink = StalledSink()
    front = Front(settings, sink=sink)
    assert front.log is not None
    front.start()
    client = PredictionClient(
        ClientSettings(f"127.0.0.1:{front.grpc_port}", deadline_s=10, max_retries=0)
    )
    rest = RestClient(f"http://127.0.0.1:{front.rest_port}", timeout_s=10)
    try:
        started = time.monotonic()
        for _ in range(10):
            assert client.predict(ModelRef(MODEL), examples[:1]).version == 1
            assert rest.predict(ModelRef(MODEL), examples[:1]).outputs
        assert time.monotonic() - started < 10  # the writer is stuck on its first record
        dropped = front.log.dropped.labels("queue_full")._value.get()
        assert front.log.sampled._value.get() == 20
        assert dropped == 20 - 1 - 2  # one in the writer, two queued, the rest dropped
    finally:
        sink.release.set()
        client.close()
        rest.close()
        front.stop()
