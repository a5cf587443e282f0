"""PredictionLog records from what a proxy saw: gRPC message bytes or REST JSON bodies.

Both the request-logging front (`serving.front`) and the KServe logger sink
(`serving.kserve_sink`) turn a sampled request and its answer into the `PredictionLog` that
`serving.request_log` writes and `operations.monitor` reads. Everything here runs in the log's
writer thread, never on the request path.
"""

from __future__ import annotations

import base64
import dataclasses
import json
from collections.abc import Mapping
from typing import Any

from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import input_pb2, model_pb2, predict_pb2, prediction_log_pb2

from serving import tensors
from serving.errors import ServingError
from serving.rest import json_example

PREDICT = "/tensorflow.serving.PredictionService/Predict"
CLASSIFY = "/tensorflow.serving.PredictionService/Classify"
REGRESS = "/tensorflow.serving.PredictionService/Regress"
# The gRPC methods whose calls are sampled; everything else only passes through.
LOGGED_METHODS = frozenset({PREDICT, CLASSIFY, REGRESS})


class RecordError(ValueError):
    """A sampled request or answer cannot be turned into a PredictionLog (it is dropped)."""


def _metadata(
    log: prediction_log_pb2.PredictionLog, spec: model_pb2.ModelSpec, sampling_rate: float
) -> None:
    log.log_metadata.model_spec.CopyFrom(spec)
    log.log_metadata.sampling_config.sampling_rate = sampling_rate


def from_grpc(
    method: str, request: bytes, response: bytes, sampling_rate: float
) -> prediction_log_pb2.PredictionLog:
    """The PredictionLog of one answered gRPC Predict/Classify/Regress call.

    The messages are parsed here, in the writer thread: the proxy forwarded them as bytes. The
    log's model spec is the response's (it names the version that answered), as TF Serving's
    `ServerRequestLogger` logs the resolved servable.
    """
    log = prediction_log_pb2.PredictionLog()
    if method == PREDICT:
        log.predict_log.request.ParseFromString(request)
        log.predict_log.response.ParseFromString(response)
        spec = log.predict_log.response.model_spec
        fallback = log.predict_log.request.model_spec
    elif method == CLASSIFY:
        log.classify_log.request.ParseFromString(request)
        log.classify_log.response.ParseFromString(response)
        spec = log.classify_log.response.model_spec
        fallback = log.classify_log.request.model_spec
    elif method == REGRESS:
        log.regress_log.request.ParseFromString(request)
        log.regress_log.response.ParseFromString(response)
        spec = log.regress_log.response.model_spec
        fallback = log.regress_log.request.model_spec
    else:
        raise RecordError(f"gRPC method {method} is not logged")
    _metadata(log, spec if spec.name else fallback, sampling_rate)
    return log


@dataclasses.dataclass(frozen=True)
class Signature:
    """Names and dtypes (DataType enum values) of a signature's inputs and outputs."""

    inputs: Mapping[str, int]
    outputs: Mapping[str, int]

    @classmethod
    def from_metadata_json(cls, metadata: Mapping[str, Any], name: str) -> Signature:
        """From TF Serving's REST metadata answer (`GET /v1/models/<m>/metadata`)."""
        try:
            signature = metadata["metadata"]["signature_def"]["signature_def"][name]
        except KeyError:
            raise RecordError(f"the model's metadata has no signature {name!r}") from None

        def dtypes(section: str) -> dict[str, int]:
            return {
                alias: types_pb2.DataType.Value(info.get("dtype", "DT_INVALID"))
                for alias, info in signature.get(section, {}).items()
            }

        return cls(dtypes("inputs"), dtypes("outputs"))


def _is_b64(value: object) -> bool:
    return isinstance(value, dict) and set(value) == {"b64"}


def _guess_dtype(value: object) -> int:
    """A JSON value's dtype where no signature says it (the KServe sink): strings and b64
    objects DT_STRING, integers DT_INT64, other numbers DT_FLOAT."""
    while isinstance(value, list) and value:
        value = value[0]
    if isinstance(value, str) or _is_b64(value):
        return types_pb2.DT_STRING
    if isinstance(value, bool | int):
        return types_pb2.DT_INT64
    return types_pb2.DT_FLOAT


def _tensor(value: object, name: str, dtypes: Mapping[str, int] | None) -> Any:
    dtype = dtypes[name] if dtypes and name in dtypes else _guess_dtype(value)
    return tensors.to_tensor_proto(tensors.from_json(value, dtype, f"{name!r}"))


def _single_name(dtypes: Mapping[str, int] | None, default: str) -> str:
    """The one input/output a bare (unnamed) JSON value belongs to."""
    if dtypes and len(dtypes) == 1:
        return next(iter(dtypes))
    return default


def _named(
    rows_or_columns: object, dtypes: Mapping[str, int] | None, default: str, rows: bool
) -> dict[str, object]:
    """TF Serving's two JSON layouts (row `instances`/`predictions`, columnar
    `inputs`/`outputs`) as name -> JSON value of the whole batch."""
    if rows:
        if not isinstance(rows_or_columns, list):
            raise RecordError("row format value is not a list")
        if rows_or_columns and all(isinstance(r, dict) and not _is_b64(r) for r in rows_or_columns):
            names = list(rows_or_columns[0])
            return {n: [r[n] for r in rows_or_columns] for n in names}
        return {_single_name(dtypes, default): rows_or_columns}
    if isinstance(rows_or_columns, dict) and not _is_b64(rows_or_columns):
        return dict(rows_or_columns)
    return {_single_name(dtypes, default): rows_or_columns}


def _parse(body: bytes, what: str) -> dict[str, Any]:
    try:
        doc = json.loads(body)
    except ValueError as e:
        raise RecordError(f"{what} is not JSON: {e}") from None
    if not isinstance(doc, dict):
        raise RecordError(f"{what} is not a JSON object")
    return doc


def _examples_input(doc: Mapping[str, Any]) -> input_pb2.Input:
    """A classify/regress body's `examples` (and `context`) as TF Serving's Input."""
    message = input_pb2.Input()
    examples = doc.get("examples")
    if not isinstance(examples, list):
        raise RecordError("the request has no 'examples' list")
    try:
        if "context" in doc:
            with_context = message.example_list_with_context
            with_context.context.CopyFrom(json_example(doc["context"]))
            with_context.examples.extend(json_example(e) for e in examples)
        else:
            message.example_list.examples.extend(json_example(e) for e in examples)
    except ServingError as e:  # json_example's INVALID_ARGUMENT texts
        raise RecordError(str(e)) from None
    return message


def from_rest(
    model: str,
    version: int | None,
    signature_name: str,
    verb: str,
    request_body: bytes,
    response_body: bytes,
    sampling_rate: float,
    signature: Signature | None = None,
) -> prediction_log_pb2.PredictionLog:
    """The PredictionLog of one answered REST `:predict`, `:classify` or `:regress` call.

    Args:
      model: The model name (from the URL, or KServe's InferenceService name).
      version: The version that answered, when known (TF Serving's REST answers do not say).
      signature_name: From the body's `signature_name`, else `serving_default`.
      verb: `predict`, `classify` or `regress`.
      request_body: The request's JSON bytes, as the client sent them.
      response_body: The 200 answer's JSON bytes.
      sampling_rate: Recorded in `log_metadata.sampling_config`.
      signature: Input/output names and dtypes (from the model's metadata); without it,
        dtypes come from the JSON values and an unnamed value is called `inputs`/`outputs`.

    Raises:
      RecordError: If a body is not what TF Serving's REST API reads or answers.
    """
    request, response = _parse(request_body, "request"), _parse(response_body, "response")
    spec = model_pb2.ModelSpec(name=model)
    if version is not None:
        spec.version.value = version
    name = request.get("signature_name") or signature_name
    if not isinstance(name, str):
        raise RecordError("signature_name is not a string")
    spec.signature_name = name
    log = prediction_log_pb2.PredictionLog()
    _metadata(log, spec, sampling_rate)
    try:
        if verb == "predict":
            predict = log.predict_log
            predict.request.CopyFrom(predict_pb2.PredictRequest(model_spec=spec))
            predict.response.model_spec.CopyFrom(spec)
            rows = "instances" in request
            body = request["instances"] if rows else request.get("inputs")
            if body is None:
                raise RecordError("the request has neither 'instances' nor 'inputs'")
            ins = signature.inputs if signature else None
            for alias, value in _named(body, ins, "inputs", rows).items():
                predict.request.inputs[alias].CopyFrom(_tensor(value, alias, ins))
            rows = "predictions" in response
            body = response["predictions"] if rows else response.get("outputs")
            if body is None:
                raise RecordError("the answer has neither 'predictions' nor 'outputs'")
            outs = signature.outputs if signature else None
            for alias, value in _named(body, outs, "outputs", rows).items():
                predict.response.outputs[alias].CopyFrom(_tensor(value, alias, outs))
        elif verb == "classify":
            classify = log.classify_log
            classify.request.model_spec.CopyFrom(spec)
            classify.request.input.CopyFrom(_examples_input(request))
            classify.response.model_spec.CopyFrom(spec)
            for row in response.get("results", []):
                result = classify.response.result.classifications.add()
                for label, score in row:
                    result.classes.add(label=str(label), score=float(score))
        elif verb == "regress":
            regress = log.regress_log
            regress.request.model_spec.CopyFrom(spec)
            regress.request.input.CopyFrom(_examples_input(request))
            regress.response.model_spec.CopyFrom(spec)
            for value in response.get("results", []):
                regress.response.result.regressions.add(value=float(value))
        else:
            raise RecordError(f"REST verb {verb!r} is not logged")
    except ServingError as e:  # tensors.from_json: a value of the wrong type or ragged
        raise RecordError(str(e)) from None
    except (TypeError, KeyError, ValueError) as e:
        raise RecordError(f"unexpected JSON layout: {e!r}") from None
    return log


def verb_of_bodies(request_body: bytes, response_body: bytes) -> str:
    """`predict`, `classify` or `regress`, told from the bodies alone (KServe's logger sends
    no URL): classify/regress requests carry `examples`; their answers' `results` rows are
    [label, score] pairs for classify and numbers for regress."""
    request, response = _parse(request_body, "request"), _parse(response_body, "response")
    if "examples" not in request:
        return "predict"
    results = response.get("results")
    if isinstance(results, list) and results and isinstance(results[0], list):
        return "classify"
    return "regress"


def b64(value: bytes) -> dict[str, str]:
    """A bytes value as TF Serving's JSON writes it."""
    return {"b64": base64.b64encode(value).decode("ascii")}
