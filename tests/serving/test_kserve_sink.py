"""The KServe logger sink: CloudEvents as KServe's logger sends them, bodies from a real server.

The events follow kserve/kserve `pkg/logger/` (commit aaac4e294dae): `worker.go`
sendHttpCloudEvent sends binary-mode CloudEvents (`cloudevents.WithEncodingBinary`) whose
headers are `ce-id` (`handler.go` getOrCreateID: the same id for a request and its response),
`ce-type` (CEInferenceRequest/CEInferenceResponse), `ce-source`, `ce-specversion: 1.0`,
`ce-time`, `ce-recordedtime` and the extensions `ce-inferenceservicename`, `ce-namespace`,
`ce-component`, `ce-endpoint`, `ce-metadata`; `Content-Type` is the request's. The bodies are
what this project's server (TF Serving's REST API) received and answered. The sink runs with
the kserve overlay's command line (localized).
"""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import tensorflow as tf
from tensorflow_serving.apis import prediction_log_pb2

from operations import monitor
from serving.examples import example_to_json
from serving.front import records
from serving.kserve_sink.sink import REQUEST_TYPE, RESPONSE_TYPE
from tests.serving.conftest import MODEL
from tests.serving.support import front_pod
from tests.serving.test_front_manifests import by_name

SERVICE = "chicago-taxi"


def kserve_event(kind: str, event_id: str, body: bytes, **override: str) -> dict[str, str]:
    """The headers KServe's logger worker sends (worker.go sendHttpCloudEvent)."""
    headers = {
        "Content-Type": "application/json",
        "ce-id": event_id,
        "ce-type": kind,
        "ce-source": "http://localhost:9081/",
        "ce-specversion": "1.0",
        "ce-time": "2026-12-07T00:00:00.000000001Z",
        "ce-recordedtime": "2026-12-07T00:00:00.000000002Z",
        "ce-inferenceservicename": SERVICE,
        "ce-namespace": "tf-serving",
        "ce-component": "predictor",
        "ce-endpoint": "default",
        "ce-metadata": "{}",
    }
    headers.update(override)
    return headers


def post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


@pytest.fixture(scope="module")
def sink(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The sink as the kserve overlay runs it, every pair sampled."""
    docs = by_name("kserve")
    container = docs[("Deployment", "tf-serving-request-log-sink")]["spec"]["template"]["spec"][
        "containers"
    ][0]
    root = tmp_path_factory.mktemp("sink")
    ports = {8080: front_pod.free_port(), 8082: front_pod.free_port()}
    args = front_pod.localize(
        container["args"],
        ports,
        {"/request-logs": str(root / "logs")},
        request_log_sampling_rate="1.0",
        max_pending_seconds="2",
    )
    with open(root / "sink.log", "wb") as log:
        process = subprocess.Popen(
            [sys.executable, *container["command"][1:], *args, "--log_format=text"],
            cwd=front_pod.ROOT,
            env={**os.environ, "PYTHONPATH": str(front_pod.ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        url = f"http://127.0.0.1:{ports[8080]}"
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(url + "/healthz", timeout=2).read()
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    process.kill()
                    raise AssertionError((root / "sink.log").read_text()) from None
                time.sleep(0.3)
        yield {
            "url": url,
            "metrics": f"http://127.0.0.1:{ports[8082]}/metrics",
            "logs": root / "logs",
        }
        process.terminate()
        process.wait(30)


def counter(metrics: str, name: str) -> float:
    with urllib.request.urlopen(metrics, timeout=5) as r:
        lines = r.read().decode().splitlines()
    return sum(float(line.rsplit(" ", 1)[1]) for line in lines if line.startswith(name))


def written(sink: dict[str, Any], expected: int) -> list[prediction_log_pb2.PredictionLog]:
    deadline = time.monotonic() + 30
    while counter(sink["metrics"], "serving_request_log_written_total") < expected:
        assert time.monotonic() < deadline, "records not written"
        time.sleep(0.1)
    logs = []
    for path in sorted(glob.glob(str(sink["logs"] / "*.tfrecord"))):
        for record in tf.data.TFRecordDataset(path).as_numpy_iterator():
            logs.append(prediction_log_pb2.PredictionLog.FromString(record))
    return logs


@pytest.fixture(scope="module")
def exchanges(
    model_library: dict[int, str], examples: list[bytes], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, tuple[bytes, bytes]]:
    """(request body, 200 answer body) of REST predict and classify, from a real server."""
    from serving.server import ModelServer
    from serving.settings import ModelSettings
    from tests.serving.conftest import install_version, server_settings

    base = str(tmp_path_factory.mktemp("kserve-model") / MODEL)
    install_version(model_library, 1, base, 1)
    server = ModelServer(server_settings(models=(ModelSettings(MODEL, base),), grpc_port=0))
    server.start()
    try:
        server.manager.wait_until_available(MODEL, 1, 60)
        rest = f"http://127.0.0.1:{server.rest_port}/v1/models/{MODEL}"
        bodies = {
            "predict": {"instances": [records.b64(e) for e in examples[:3]]},
            "classify": {
                "signature_name": "classify",
                "examples": [example_to_json(tf.train.Example.FromString(e)) for e in examples[:2]],
            },
        }
        out = {}
        for verb, body in bodies.items():
            raw = json.dumps(body).encode()
            status, answer = post(f"{rest}:{verb}", raw, {"Content-Type": "application/json"})
            assert status == 200, answer
            out[verb] = (raw, answer)
        return out
    finally:
        server.stop()


def test_request_and_response_events_are_paired_into_prediction_logs(
    sink: dict[str, Any], exchanges: dict[str, tuple[bytes, bytes]], examples: list[bytes]
) -> None:
    predict_request, predict_response = exchanges["predict"]
    first = str(uuid.uuid4())
    assert (
        post(sink["url"], predict_request, kserve_event(REQUEST_TYPE, first, predict_request))[0]
        == 200
    )
    assert (
        post(sink["url"], predict_response, kserve_event(RESPONSE_TYPE, first, predict_response))[0]
        == 200
    )
    # The worker pool may deliver the response first: paired all the same.
    classify_request, classify_response = exchanges["classify"]
    second = str(uuid.uuid4())
    assert (
        post(
            sink["url"], classify_response, kserve_event(RESPONSE_TYPE, second, classify_response)
        )[0]
        == 200
    )
    assert (
        post(sink["url"], classify_request, kserve_event(REQUEST_TYPE, second, classify_request))[0]
        == 200
    )
    logs = written(sink, 2)
    by_kind = {log.WhichOneof("log_type"): log for log in logs}
    assert set(by_kind) == {"predict_log", "classify_log"}
    predict = by_kind["predict_log"]
    assert predict.log_metadata.model_spec.name == SERVICE
    assert monitor.examples_of(predict) == examples[:3]
    assert len(predict.predict_log.response.outputs) >= 1
    classify = by_kind["classify_log"]
    assert classify.log_metadata.model_spec.signature_name == "classify"
    assert len(monitor.examples_of(classify)) == 2
    assert len(classify.classify_log.response.result.classifications) == 2


def test_events_kserve_would_not_send_are_refused_naming_what_is_wrong(
    sink: dict[str, Any],
) -> None:
    body = b'{"instances": [1]}'
    headers = kserve_event(REQUEST_TYPE, "x", body)
    del headers["ce-id"]
    status, answer = post(sink["url"], body, headers)
    assert status == 400 and "ce-id" in json.loads(answer)["error"]
    status, answer = post(sink["url"], body, kserve_event("com.example.other", "y", body))
    assert status == 400 and "com.example.other" in json.loads(answer)["error"]
    structured = {"Content-Type": "application/cloudevents+json"}
    assert post(sink["url"], body, structured)[0] == 415


def test_a_half_whose_pair_never_comes_is_dropped_and_counted(sink: dict[str, Any]) -> None:
    before = counter(sink["metrics"], "kserve_sink_unpaired_total")
    body = b'{"instances": [1]}'
    assert post(sink["url"], body, kserve_event(REQUEST_TYPE, str(uuid.uuid4()), body))[0] == 200
    time.sleep(2.5)  # --max_pending_seconds=2: the next event evicts it
    assert post(sink["url"], body, kserve_event(REQUEST_TYPE, str(uuid.uuid4()), body))[0] == 200
    assert counter(sink["metrics"], "kserve_sink_unpaired_total") == before + 1


def test_sampling_keeps_or_drops_both_halves_of_a_pair() -> None:
    from prometheus_client import CollectorRegistry

    from serving.front.log import RecordLog
    from serving.kserve_sink.sink import Pairing
    from serving.settings import RequestLogSettings

    log = RecordLog(
        RequestLogSettings(directory="/nonexistent-never-written", sampling_rate=0.25),
        CollectorRegistry(),
        sink=_NullSink(),
    )
    pairing = Pairing(log, CollectorRegistry(), 10, 10.0)
    ids = [str(uuid.UUID(int=i)) for i in range(4000)]
    kept = sum(pairing.sampled(i) for i in ids)
    assert 800 < kept < 1200  # about a quarter


class _NullSink:
    def write(self, record: bytes) -> None:
        pass

    def close(self) -> None:
        pass
