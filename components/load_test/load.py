"""The load itself: TF Serving requests from the warm-up file and eval examples, sent over gRPC.

Requests are TF Serving's own protos (`tensorflow_serving.apis`), so the same load runs against
the real `tensorflow/serving`. Which requests are sent follows the served model's metadata:
Predict on `serving_default`, Classify and Regress on every signature with those method names.
"""

import concurrent.futures
import dataclasses
import time
from collections.abc import Iterable, Sequence
from typing import TypeAlias

import grpc
import numpy as np
from tensorflow.core.example import example_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    input_pb2,
    predict_pb2,
    prediction_log_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)

import model_contract

DEFAULT_SIGNATURE = "serving_default"
# Request kinds, as TF Serving names its PredictionService methods.
PREDICT = "Predict"
CLASSIFY = "Classify"
REGRESS = "Regress"
_STRING_DTYPE = 7  # tensorflow.DataType DT_STRING
_MAX_ERRORS_KEPT = 5

Request: TypeAlias = (
    predict_pb2.PredictRequest
    | classification_pb2.ClassificationRequest
    | regression_pb2.RegressionRequest
)


@dataclasses.dataclass(frozen=True)
class Call:
    """One request to send: which method, what for (`warmup` or `eval`), and the proto."""

    method: str
    source: str
    request: Request


@dataclasses.dataclass(frozen=True)
class LoadResult:
    """What the load measured.

    Attributes:
      requests: Requests sent.
      failures: Requests answered with an error (or not answered in time).
      by_method: `<source>/<method>` -> requests sent.
      latencies_ms: Round-trip time of every request, in the order they finished.
      errors: The first few errors, `<method>: <code>: <details>`.
    """

    requests: int
    failures: int
    by_method: dict[str, int]
    latencies_ms: tuple[float, ...]
    errors: tuple[str, ...]

    def percentile_ms(self, q: float) -> float:
        """The q-th percentile of the latencies (0 when nothing was sent)."""
        return float(np.percentile(self.latencies_ms, q)) if self.latencies_ms else 0.0


def read_warmup_calls(records: Iterable[bytes], model_name: str) -> list[Call]:
    """TF Serving's warm-up `PredictionLog` records as calls to the served model.

    Args:
      records: Serialized `PredictionLog`s (the model's warm-up TFRecord).
      model_name: Name the model is served as (replaces the name recorded in the file).

    Returns:
      One call per Predict, Classify or Regress log, in file order; MultiInference and
      SessionRun logs are left out (TF Serving's warm-up replays them, this server answers
      MultiInference with UNIMPLEMENTED).

    Raises:
      ValueError: If a record is not a PredictionLog, or there are more records than TF
        Serving replays.
    """
    calls: list[Call] = []
    for i, record in enumerate(records):
        if i >= model_contract.MAX_WARMUP_RECORDS:
            raise ValueError(
                f"warm-up file has more than {model_contract.MAX_WARMUP_RECORDS} records, "
                "the most TF Serving replays"
            )
        log = prediction_log_pb2.PredictionLog.FromString(record)
        kind = log.WhichOneof("log_type")
        request: Request
        if kind == "predict_log":
            method, request = PREDICT, log.predict_log.request
        elif kind == "classify_log":
            method, request = CLASSIFY, log.classify_log.request
        elif kind == "regress_log":
            method, request = REGRESS, log.regress_log.request
        else:
            continue
        request.model_spec.name = model_name
        request.model_spec.ClearField("version_choice")
        calls.append(Call(method, "warmup", request))
    return calls


def signatures_of(metadata: get_model_metadata_pb2.GetModelMetadataResponse) -> dict[str, str]:
    """Signature name -> method name of the served model, from GetModelMetadata."""
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    metadata.metadata["signature_def"].Unpack(signature_map)
    return {name: sig.method_name for name, sig in signature_map.signature_def.items()}


def predict_input_name(metadata: get_model_metadata_pb2.GetModelMetadataResponse) -> str:
    """The one string input of `serving_default` (serialized tf.Examples).

    Raises:
      ValueError: If the model has no such signature or it takes no single string input.
    """
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    metadata.metadata["signature_def"].Unpack(signature_map)
    if DEFAULT_SIGNATURE not in signature_map.signature_def:
        raise ValueError(
            f"the model has no {DEFAULT_SIGNATURE!r} signature; it has "
            f"{sorted(signature_map.signature_def)}"
        )
    inputs = signature_map.signature_def[DEFAULT_SIGNATURE].inputs
    strings = [name for name, info in inputs.items() if info.dtype == _STRING_DTYPE]
    if len(inputs) != 1 or not strings:
        raise ValueError(
            f"{DEFAULT_SIGNATURE!r} must take one string input (serialized tf.Examples); "
            f"it takes {dict((k, v.dtype) for k, v in inputs.items())}"
        )
    return strings[0]


def example_calls(
    examples: Sequence[bytes],
    model_name: str,
    predict_input: str,
    signatures: dict[str, str],
) -> list[Call]:
    """Predict on `serving_default`, and Classify/Regress on each signature that supports it,
    for each serialized example (one example per request, as an online client sends them).

    Args:
      examples: Serialized tf.Examples.
      model_name: Served model name.
      predict_input: `serving_default`'s input name.
      signatures: Signature name -> method name (see `signatures_of`).

    Returns:
      The calls, interleaved example by example.
    """
    classify = sorted(n for n, m in signatures.items() if m == model_contract.CLASSIFY_METHOD)
    regress = sorted(n for n, m in signatures.items() if m == model_contract.REGRESS_METHOD)
    calls: list[Call] = []
    for serialized in examples:
        predict = predict_pb2.PredictRequest()
        predict.model_spec.name = model_name
        predict.model_spec.signature_name = DEFAULT_SIGNATURE
        tensor = predict.inputs[predict_input]
        tensor.dtype = _STRING_DTYPE
        tensor.tensor_shape.dim.add().size = 1
        tensor.string_val.append(serialized)
        calls.append(Call(PREDICT, "eval", predict))
        example_list = input_pb2.Input(
            example_list=input_pb2.ExampleList(examples=[_example(serialized)])
        )
        for name in classify:
            request = classification_pb2.ClassificationRequest(input=example_list)
            request.model_spec.name, request.model_spec.signature_name = model_name, name
            calls.append(Call(CLASSIFY, "eval", request))
        for name in regress:
            regression = regression_pb2.RegressionRequest(input=example_list)
            regression.model_spec.name, regression.model_spec.signature_name = model_name, name
            calls.append(Call(REGRESS, "eval", regression))
    return calls


def _example(serialized: bytes) -> example_pb2.Example:
    # Classify and Regress take parsed tf.Examples (TF Serving's Input proto), not strings.
    return example_pb2.Example.FromString(serialized)


def model_metadata(
    channel: grpc.Channel, model_name: str, timeout_s: float
) -> get_model_metadata_pb2.GetModelMetadataResponse:
    """GetModelMetadata (signature defs) of the served model."""
    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    request.model_spec.name = model_name
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    return stub.GetModelMetadata(request, timeout=timeout_s)


def run_load(
    channel: grpc.Channel, calls: Sequence[Call], concurrency: int, timeout_s: float
) -> LoadResult:
    """Sends every call, `concurrency` at a time, and times each round trip.

    Args:
      channel: Channel to the server.
      calls: What to send.
      concurrency: Requests in flight at once.
      timeout_s: Deadline of each request.

    Returns:
      Counts, latencies and the first errors.
    """
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    methods = {PREDICT: stub.Predict, CLASSIFY: stub.Classify, REGRESS: stub.Regress}

    def send(call: Call) -> tuple[float, str | None]:
        start = time.perf_counter()
        try:
            methods[call.method](call.request, timeout=timeout_s)
            error = None
        except grpc.RpcError as e:  # every gRPC failure is a failed request, counted
            error = f"{call.source} {call.method}: {e.code().name}: {e.details()}"
        return (time.perf_counter() - start) * 1000.0, error

    latencies: list[float] = []
    errors: list[str] = []
    failures = 0
    with concurrent.futures.ThreadPoolExecutor(max_workers=concurrency) as pool:
        for latency, error in pool.map(send, calls):
            latencies.append(latency)
            if error is not None:
                failures += 1
                if len(errors) < _MAX_ERRORS_KEPT:
                    errors.append(error)
    by_method: dict[str, int] = {}
    for call in calls:
        key = f"{call.source}/{call.method}"
        by_method[key] = by_method.get(key, 0) + 1
    return LoadResult(len(calls), failures, by_method, tuple(latencies), tuple(errors))
