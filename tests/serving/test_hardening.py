"""Issue 11 regressions: limits, malformed input, load retries, drain, health, REST TLS."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
import tensorflow as tf
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tensorflow.core.framework import tensor_pb2, types_pb2
from tensorflow_serving.apis import (
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from serving import tensors
from serving.client import ClientSettings, ModelRef, PredictionClient
from serving.errors import Code, InvalidArgumentError, ServingError
from serving.server import OVERALL_HEALTH_SERVICE, ModelServer
from serving.settings import ModelSettings, TlsServerSettings
from tests.serving.conftest import (
    MODEL,
    Served,
    Target,
    install_version,
    mutate,
    server_settings,
    wait_for,
)
from tests.serving.test_lifecycle import _certificates, spin

pytestmark = pytest.mark.slow

PREDICT = "/tensorflow.serving.PredictionService/Predict"


def _string_tensor(values: list[bytes], shape: list[int]) -> tensor_pb2.TensorProto:
    proto = tensor_pb2.TensorProto(dtype=types_pb2.DT_STRING, string_val=values)
    for size in shape:
        proto.tensor_shape.dim.add(size=size)
    return proto


def _predict_request(name: str, proto: tensor_pb2.TensorProto) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = MODEL
    request.inputs[name].CopyFrom(proto)
    return request


@pytest.fixture()
def stub(target: Target) -> Iterator[prediction_service_pb2_grpc.PredictionServiceStub]:
    if not target.embedded:
        pytest.skip("checks this server's limits and messages")
    with grpc.insecure_channel(target.grpc) as channel:
        yield prediction_service_pb2_grpc.PredictionServiceStub(channel)


def _grpc_error(call: Callable[[], object]) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value


def _rest(target: Target, verb: str, path: str, body: bytes | None = None) -> tuple[int, dict]:
    conn = http.client.HTTPConnection(target.rest.split("//")[1], timeout=30)
    try:
        conn.request(verb, path, body=body)
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def _no_python_text(message: str) -> None:
    for leak in ("Traceback", "Error:", "/serving/", 'File "'):
        assert leak not in message, message


# 1. Concurrent RPC limit -------------------------------------------------------------------------


def test_stalled_calls_beyond_the_limit_are_refused_not_queued(
    serve_model: Callable[..., Served],
) -> None:
    # Each stalled call (headers sent, request message never) holds a gRPC thread; without a
    # limit, as many stalled calls as threads made every later call wait for its deadline.
    served = serve_model(grpc_max_workers=4, grpc_max_concurrent_rpcs=2)
    release = threading.Event()

    def stalled_requests() -> Iterator[bytes]:
        release.wait(30)
        yield b""  # an empty PredictRequest, once released

    channel = grpc.insecure_channel(f"127.0.0.1:{served.server.grpc_port}")
    try:
        stalled_call = channel.stream_unary(PREDICT)
        stalled = [stalled_call.future(stalled_requests(), timeout=30) for _ in range(4)]
        status = model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus
        request = get_model_status_pb2.GetModelStatusRequest()
        request.model_spec.name = MODEL
        wait_for(lambda: sum(f.done() for f in stalled) >= 2, 10)
        refused = [f for f in stalled if f.done()]
        assert all(f.code() == grpc.StatusCode.RESOURCE_EXHAUSTED for f in refused)
        error = _grpc_error(lambda: status(request, timeout=5))
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED  # at once, not a deadline
        release.set()
        for future in stalled:
            future.exception(30)  # every stalled call ends
        assert status(request, timeout=10).model_version_status
    finally:
        release.set()
        channel.close()


# 2. Elements and examples per request ------------------------------------------------------------


def test_broadcast_beyond_the_element_limit_is_refused_before_allocation(
    serve_model: Callable[..., Served], examples: list[bytes]
) -> None:
    served = serve_model(max_request_elements=1000, max_examples_per_request=100)
    port = served.server.grpc_port
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        # A few hundred bytes declaring a million copies of one string.
        request = _predict_request("examples", _string_tensor([examples[0]], [1_000_000]))
        error = _grpc_error(lambda: stub.Predict(request, timeout=10))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "max_request_elements" in error.details()
        request = _predict_request("examples", _string_tensor([examples[0]], [101]))
        error = _grpc_error(lambda: stub.Predict(request, timeout=10))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "max_examples_per_request" in error.details()
        assert (
            stub.Predict(
                _predict_request("examples", _string_tensor([examples[0]], [100])), timeout=30
            )
            .outputs["probabilities"]
            .tensor_shape.dim[0]
            .size
            == 100
        )
    with pytest.raises(ServingError, match="max_examples_per_request") as info:
        served.client.classify(ModelRef(MODEL), [examples[0]] * 101)
    assert info.value.code == Code.INVALID_ARGUMENT


def test_element_count_checks_the_declared_shape_first() -> None:
    huge = _string_tensor([b"x"], [1 << 20, 1 << 20])  # 2^40 elements: never allocated
    with pytest.raises(InvalidArgumentError, match="max_request_elements"):
        tensors.element_count(huge, "Input 'x'", 4_000_000)
    with pytest.raises(InvalidArgumentError, match="2 values do not match"):
        tensors.element_count(_string_tensor([b"a", b"b"], [3]), "Input 'x'", 100)
    with pytest.raises(InvalidArgumentError, match="unsupported dtype DT_<9999>"):
        tensors.element_count(tensor_pb2.TensorProto(dtype=9999), "Input 'x'", 100)
    assert tensors.element_count(_string_tensor([b"a"], [3, 2]), "Input 'x'", 100) == 6


# 5. Malformed requests: INVALID_ARGUMENT / 400, no Python text -----------------------------------


def test_grpc_unknown_dtype_and_huge_shape_are_invalid_argument(
    stub: prediction_service_pb2_grpc.PredictionServiceStub,
) -> None:
    for proto in (
        tensor_pb2.TensorProto(dtype=9999),
        _string_tensor([b"x"], [1 << 40]),
    ):
        request = _predict_request("examples", proto)
        error = _grpc_error(lambda: stub.Predict(request, timeout=10))  # noqa: B023
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
        _no_python_text(error.details())


@pytest.mark.parametrize(
    ("path", "body", "expected"),
    [
        (f"/v1/models/{MODEL}:regress", b'{"examples": [{"fare": {"b64": "!!"}}]}', "base64"),
        # json_tensor.cc AddValueToFeature: an integer above int64 (a uint64) is refused.
        (f"/v1/models/{MODEL}:regress", b'{"examples": [{"trip_seconds": %d}]}' % 2**63, "int64"),
        (
            f"/v1/models/{MODEL}:predict",
            b'{"signature_name": "spin", "inputs": {"iterations": %d}}' % 2**70,
            "out of range",
        ),
        (f"/v1/models/{MODEL}:predict", b'{"instances": ' + b"[" * 100_000, "nested"),
        (
            f"/v1/models/{MODEL}:predict",
            b'{"instances": ' + b"[" * 500 + b"]" * 500 + b"}",
            "nested",
        ),
    ],
    ids=["invalid-base64", "int64-overflow-feature", "int64-overflow-tensor", "deep-json", "depth"],
)
def test_malformed_rest_bodies_are_400(
    target: Target, path: str, body: bytes, expected: str
) -> None:
    if not target.embedded:
        pytest.skip("checks this server's messages")
    status, payload = _rest(target, "POST", path, body)
    assert status == 400, payload
    assert expected in payload["error"]
    _no_python_text(payload["error"])


def test_version_beyond_int64_is_400(target: Target) -> None:
    if not target.embedded:
        pytest.skip("checks this server's messages")
    # tensorflow_serving/model_servers/http_rest_api_handler.cc: ParseModelInfo
    # (http_rest_api_util.cc): SimpleAtoi fails -> INVALID_ARGUMENT (400), returned before
    # the JSON error body is written (no body; tests/serving/test_parity.py), and logged.
    conn = http.client.HTTPConnection(target.rest.split("//")[1], timeout=30)
    try:
        conn.request("GET", f"/v1/models/{MODEL}/versions/{2**70}")
        response = conn.getresponse()
        assert (response.status, response.read()) == (400, b"")
    finally:
        conn.close()


# 8. REST routes and headers ----------------------------------------------------------------------


# OPTIONS is a CORS preflight there (http_server.cc; tests/serving/test_parity.py).
@pytest.mark.parametrize("verb", ["PUT", "DELETE", "PATCH", "POST", "GET"])
def test_unrouted_v1_requests_get_tf_servings_json_400(target: Target, verb: str) -> None:
    # http_rest_api_handler.cc ProcessRequest: any /v1/ request no route regex matches (any
    # verb, e.g. GET of a :predict path or POST of a status path) is INVALID_ARGUMENT
    # "Malformed request: <verb> <path>", as JSON.
    path = f"/v1/models/{target.model}:predict" if verb == "GET" else f"/v1/models/{target.model}"
    conn = http.client.HTTPConnection(target.rest.split("//")[1], timeout=30)
    try:
        conn.request(verb, path, body=b"{}" if verb != "GET" else None)
        response = conn.getresponse()
        payload = json.loads(response.read())
        assert response.status == 400
        assert payload == {"error": f"Malformed request: {verb} {path}"}
        if target.embedded:
            assert response.getheader("Server") is None  # no software/version banner
    finally:
        conn.close()


def test_paths_outside_v1_are_404_json(target: Target) -> None:
    if not target.embedded:
        pytest.skip("TF Serving answers paths outside /v1/ from its HTTP library, not as JSON")
    status, payload = _rest(target, "GET", "/nothing/here")
    assert status == 404 and "Malformed request" in payload["error"]


# 7. Broadcasting keeps trailing NUL bytes --------------------------------------------------------


def test_broadcast_keeps_trailing_nul_bytes(
    stub: prediction_service_pb2_grpc.PredictionServiceStub, examples: list[bytes]
) -> None:
    # Serialized messages concatenate into their merge: examples[0] with the feature set to 0
    # by a second, one-feature message, so the bytes end in the varint 0.
    tail = tf.train.Example()
    tail.features.feature["pickup_community_area"].int64_list.value.append(0)
    example = mutate(examples[0], pickup_community_area=None) + tail.SerializeToString()
    assert example.endswith(b"\x00")
    assert tf.train.Example.FromString(example) == tf.train.Example.FromString(
        mutate(examples[0], pickup_community_area=0)
    )
    single = stub.Predict(_predict_request("examples", _string_tensor([example], [1])), timeout=30)
    broadcast = stub.Predict(
        _predict_request("examples", _string_tensor([example], [3])), timeout=30
    )
    one = tensors.to_ndarray(single.outputs["probabilities"])
    three = tensors.to_ndarray(broadcast.outputs["probabilities"])
    np.testing.assert_allclose(three, np.repeat(one, 3, axis=0), rtol=1e-6)
    assert tensors.to_ndarray(_string_tensor([example], [2])).tolist() == [example, example]


# 3. Failed loads are retried with backoff --------------------------------------------------------


def test_failed_load_is_retried_and_each_attempt_reported(
    serve_model: Callable[..., Served], model_library: dict[int, str]
) -> None:
    served = serve_model(
        versions=(),
        wait_for_version=None,
        max_num_load_retries=3,
        load_retry_interval_s=1.0,
        file_system_poll_s=0.1,
    )
    # Version 1 without its variables: saved_model.pb is there (complete by the contract)
    # but the load fails until the variables arrive; saved_model.pb never changes.
    staging = Path(served.base) / ".staging"
    shutil.copytree(model_library[1], staging)
    variables = staging / "variables"
    shutil.move(str(variables), str(Path(served.base).parent / "held-variables"))
    os.rename(staging, Path(served.base) / "1")
    manager = served.server.manager

    def failed_attempts() -> float:
        registry = served.server.metrics.registry
        labels = {"model": MODEL, "outcome": "error"}
        return registry.get_sample_value("serving_version_loads_total", labels) or 0.0

    # Between attempts the version is LOADING with an OK status, as in TF Serving
    # (loader_harness.cc); each failed attempt is counted (and logged).
    wait_for(lambda: failed_attempts() == 2, 30)
    (status,) = manager.statuses(MODEL, 1)
    assert (status.state.name, status.error_code, status.error_message) == ("LOADING", 0, "")
    held = Path(served.base).parent / "held-variables"
    shutil.move(str(held), str(Path(served.base) / "1" / "variables"))
    wait_for(lambda: manager.statuses(MODEL, 1)[0].state.name == "AVAILABLE", 30)
    assert served.client.model_status(ModelRef(MODEL))[0]["state"] == "AVAILABLE"


def test_retries_stop_after_max_num_load_retries(serve_model: Callable[..., Served]) -> None:
    served = serve_model(
        versions=(),
        wait_for_version=None,
        max_num_load_retries=1,
        load_retry_interval_s=0.1,
        file_system_poll_s=0.1,
    )
    broken = Path(served.base) / "1"
    broken.mkdir(parents=True)
    (broken / "saved_model.pb").write_bytes(b"not a SavedModel")
    manager = served.server.manager

    def state() -> str:
        try:
            return manager.statuses(MODEL, 1)[0].state.name
        except ServingError:
            return ""

    # After 1 + max_num_load_retries attempts: END with the load's error (loader_harness.cc).
    wait_for(lambda: state() == "END", 30)
    (status,) = manager.statuses(MODEL, 1)
    assert status.error_code != 0 and "saved_model.pb" in status.error_message
    registry = served.server.metrics.registry
    labels = {"model": MODEL, "outcome": "error"}
    assert registry.get_sample_value("serving_version_loads_total", labels) == 2


# 6. Drain: in-flight calls on open channels finish -----------------------------------------------


def test_sigterm_drain_finishes_in_flight_calls_with_an_idle_channel_open(
    tmp_path: Path, model_library: dict[int, str]
) -> None:
    base = str(tmp_path / MODEL)
    install_version(model_library, 1, base, 1)
    server = ModelServer(
        server_settings(models=(ModelSettings(MODEL, base),), rest_port=None, drain_timeout_s=30)
    )
    server.start()
    idle = grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}")
    try:
        server.manager.wait_until_available(MODEL, 1, 60)
        grpc.channel_ready_future(idle).result(timeout=10)  # connected, then left idle
        client = PredictionClient(
            ClientSettings(f"127.0.0.1:{server.grpc_port}", deadline_s=60, max_retries=0)
        )
        start = time.perf_counter()
        spin(client, 5000)
        iterations = int(5000 * 1.5 / max(time.perf_counter() - start, 1e-3))  # about 1.5 s
        outcomes: list[object] = []

        def call() -> None:
            try:
                outcomes.append(spin(client, iterations))
            except ServingError as e:
                outcomes.append(e)

        threads = [threading.Thread(target=call) for _ in range(4)]
        for t in threads:
            t.start()
        wait_for(lambda: server._drain._inflight == 4, 30)
        stopper = threading.Thread(target=server.stop)
        stopper.start()
        for t in threads:
            t.join(60)
        stopper.join(60)
        assert not stopper.is_alive()
        assert len(outcomes) == 4 and all(isinstance(o, float) for o in outcomes), outcomes
        client.close()
    finally:
        idle.close()
        server.stop()


# 11. gRPC health --------------------------------------------------------------------------------


def test_grpc_health_follows_model_availability_and_drain(
    serve_model: Callable[..., Served], model_library: dict[int, str]
) -> None:
    served = serve_model(versions=(), wait_for_version=None, tf_serving_health_names=True)
    channel = grpc.insecure_channel(f"127.0.0.1:{served.server.grpc_port}")
    health = health_pb2_grpc.HealthStub(channel)

    def status(service: str) -> int:
        return int(health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status)

    serving = health_pb2.HealthCheckResponse.SERVING
    not_serving = health_pb2.HealthCheckResponse.NOT_SERVING
    try:
        assert status(OVERALL_HEALTH_SERVICE) == not_serving  # nothing loaded yet
        assert status(MODEL) == not_serving
        # TF Serving's own names (--enable_grpc_healthcheck_service) follow the process, not
        # the models, as in tensorflow_serving/model_servers/server.cc.
        assert status("PredictionService") == status("ModelService") == serving
        error = _grpc_error(lambda: status("no-such-model"))
        assert error.code() == grpc.StatusCode.NOT_FOUND
        install_version(model_library, 1, served.base, 1)
        wait_for(lambda: status(OVERALL_HEALTH_SERVICE) == serving, 60)
        assert status(MODEL) == serving
        stopper = threading.Thread(target=served.server.stop)
        stopper.start()
        # Draining: NOT_SERVING before the port closes (or the port is already closed).
        try:
            wait_for(lambda: status(MODEL) == not_serving, 10)
        except grpc.RpcError as e:
            # A probe in flight when the drained server closes its connections is CANCELLED.
            assert e.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED)
        stopper.join(30)
    finally:
        channel.close()


# 9. REST over TLS --------------------------------------------------------------------------------


def test_rest_serves_https_with_the_grpc_tls_settings(
    tmp_path: Path, model_library: dict[int, str]
) -> None:
    base = str(tmp_path / MODEL)
    install_version(model_library, 1, base, 1)
    certs = _certificates(tmp_path)
    tls = TlsServerSettings(certs["server"], certs["server_key"], certs["ca"])
    with ModelServer(server_settings(models=(ModelSettings(MODEL, base),), tls=tls)) as server:
        server.manager.wait_until_available(MODEL, 1, 60)
        context = ssl.create_default_context(cafile=certs["ca"])
        context.load_cert_chain(certs["client"], certs["client_key"])
        conn = http.client.HTTPSConnection("localhost", server.rest_port, context=context)
        conn.request("GET", f"/v1/models/{MODEL}")
        response = conn.getresponse()
        assert response.status == 200
        assert json.loads(response.read())["model_version_status"][0]["state"] == "AVAILABLE"
        conn.close()
        plain = http.client.HTTPConnection("127.0.0.1", server.rest_port, timeout=5)
        with pytest.raises((ConnectionError, http.client.HTTPException, OSError)):
            plain.request("GET", f"/v1/models/{MODEL}")
            plain.getresponse().read()
        plain.close()
        no_cert = ssl.create_default_context(cafile=certs["ca"])
        refused = http.client.HTTPSConnection("localhost", server.rest_port, context=no_cert)
        with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
            refused.request("GET", f"/v1/models/{MODEL}")
            refused.getresponse().read()
        refused.close()
