"""TF Serving's REST JSON: routes, request bodies to inputs, outputs to JSON (no HTTP server).

What `rest.RestServer` (and any other HTTP front, e.g. the request-logging front) uses to read
and write TF Serving's REST API, following tensorflow_serving/util/json_tensor.cc and
tensorflow_serving/model_servers/http_rest_api_handler.cc / http_rest_api_util.cc.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import re
import urllib.parse
from collections.abc import Mapping
from typing import Any

import numpy as np
import tensorflow as tf

from model_contract.serving_input import with_context
from serving import tensors
from serving.errors import InvalidArgumentError, NotFoundError, ServingError
from serving.model import SignatureInfo
from serving.service import (
    InferenceService,
    RequestLimits,
    Target,
    classification_rows,
    regression_values,
)

# tensorflow_serving/model_servers/http_rest_api_util.cc: kPredictionApiGegex (POST) and
# kModelStatusApiRegex (GET), matched whole and case-insensitively. Versions are unsigned.
POST_ROUTE = re.compile(
    r"(?i)/v1/models/(?P<name>[^/:]+)"
    r"(?:(?:/versions/(?P<version>\d+))|(?:/labels/(?P<label>[^/:]+)))?"
    r":(?P<verb>classify|regress|predict)"
)
GET_ROUTE = re.compile(
    r"(?i)/v1/models(?:/(?P<name>[^/:]+))?"
    r"(?:(?:/versions/(?P<version>\d+))|(?:/labels/(?P<label>[^/:]+)))?"
    r"(?:/(?P<subresource>metadata))?"
)
# http_server.cc (RestApiRequestDispatcher::ProcessRequest): a CORS preflight is OK when
# its Origin header has an http(s) scheme.
CORS_ORIGIN = re.compile(r"https?://")
METRICS_PATHS = ("/monitoring/prometheus/metrics", "/metrics")
_INT64_MIN, _INT64_MAX, _UINT64_MAX = -(2**63), 2**63 - 1, 2**64 - 1
# Deeper JSON is refused before conversion (the converters recurse once per level).
MAX_JSON_DEPTH = 64


def _compact(value: object) -> str:
    """A JSON value as TF Serving quotes it in errors (json_tensor.cc, JsonValueToString)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _format_error(doc: object, *parts: str) -> InvalidArgumentError:
    """json_tensor.cc FormatError: "JSON Value: <the value> <what is wrong>"."""
    return InvalidArgumentError(f"JSON Value: {_compact(doc)} " + "".join(parts))


def _is_b64(value: object) -> bool:
    """json_tensor.cc IsValBase64Object: an object whose only key "b64" holds a string."""
    return isinstance(value, dict) and len(value) == 1 and isinstance(value.get("b64"), str)


_KIND_NAMES = {"bytes_list": "bytes", "float_list": "float", "int64_list": "int64"}


def _add_feature_value(value: object, name: str, feature: tf.train.Feature) -> None:
    """One JSON value into a feature, as json_tensor.cc AddValueToFeature.

    The first value fixes the feature's kind: strings and {"b64": ...} are bytes, JSON
    numbers with a fraction or exponent (or beyond the integer ranges) float, other numbers
    and booleans int64; a later value of another kind is an error.
    """
    if value is None or isinstance(value, list) or (isinstance(value, dict) and not _is_b64(value)):
        raise InvalidArgumentError(
            f"Feature: {name} has element with unexpected JSON type: {tensors.json_type(value)}"
        )
    kind: str
    item: Any
    if isinstance(value, bool):
        kind, item = "int64_list", int(value)
    elif isinstance(value, dict):
        kind = "bytes_list"
        try:
            item = base64.b64decode(value["b64"], validate=True)
        except ValueError:
            raise InvalidArgumentError("Unable to base64 decode") from None
    elif isinstance(value, str):
        kind, item = "bytes_list", value.encode("utf-8")
    elif isinstance(value, float) or not _INT64_MIN <= value <= _UINT64_MAX:  # type: ignore[operator]
        kind, item = "float_list", float(value)  # type: ignore[arg-type]
    else:
        kind, item = "int64_list", value
    current = feature.WhichOneof("kind")
    if current is not None and current != kind:
        raise InvalidArgumentError(
            f"Unexpected element type in feature: {name} expecting type: {_KIND_NAMES[current]}"
        )
    if kind == "int64_list" and item > _INT64_MAX:
        raise InvalidArgumentError(
            f"Feature: {name} has uint64_t element. Only int64_t is supported."
        )
    getattr(feature, kind).value.append(item)


def json_example(obj: object) -> tf.train.Example:
    """Converts a REST classify/regress JSON example (feature name -> value(s)) to a tf.Example.

    As tensorflow_serving/util/json_tensor.cc (MakeExampleFromJsonObject): integer JSON
    numbers become int64 features and other numbers float features (send `12.0`, not `12`,
    for a FLOAT feature), booleans int64 1/0, strings and {"b64": ...} bytes.

    Args:
      obj: Decoded JSON object.

    Returns:
      The example.

    Raises:
      InvalidArgumentError: If the object or a value cannot be converted (TF Serving's texts).
    """
    if not isinstance(obj, dict):
        raise InvalidArgumentError(
            f"Example must be JSON object but got JSON {tensors.json_type(obj)}"
        )
    example = tf.train.Example()
    for name, content in obj.items():
        feature = tf.train.Feature()
        for value in content if isinstance(content, list) else [content]:
            _add_feature_value(value, name, feature)
        example.features.feature[name].CopyFrom(feature)
    return example


def _named_inputs(value: object) -> bool:
    return isinstance(value, dict) and not _is_b64(value)


def _rows_to_arrays(instances: list[Any], info: SignatureInfo) -> dict[str, np.ndarray]:
    """The row format, as json_tensor.cc FillTensorMapFromInstancesList (its error texts)."""
    names = sorted(info.inputs)
    if not isinstance(instances[0], dict) and len(names) > 1:
        raise InvalidArgumentError(
            "instances is a plain list, but expecting list of objects as multiple input "
            "tensors required as per tensorinfo_map"
        )
    columns: dict[str, list[object]] = {}
    if _named_inputs(instances[0]):
        for i, row in enumerate(instances):
            if not _named_inputs(row):
                raise InvalidArgumentError(
                    f"Expecting object but got list at item {i} of input list"
                )
            for key, value in row.items():
                if key not in info.inputs:
                    raise InvalidArgumentError(
                        f"Failed to process element: {i} key: {key} of 'instances' list. Error: "
                        f"INVALID_ARGUMENT: JSON object: does not have named input: {key}"
                    )
                columns.setdefault(key, []).append(value)
            if set(row) != set(names):
                raise InvalidArgumentError(
                    f"Failed to process element: {i} of 'instances' list. JSON object: "
                    f"{_compact(row)} keys must be equal to: {','.join(names)}"
                )
    else:
        for i, row in enumerate(instances):
            if _named_inputs(row):
                raise InvalidArgumentError(
                    f"Expecting value/list but got object at item {i} of input list"
                )
        columns = {names[0]: list(instances)}
    return _convert(columns, info)


def _columns_to_arrays(inputs: object, info: SignatureInfo) -> dict[str, np.ndarray]:
    """The columnar format, as json_tensor.cc FillTensorMapFromInputsMap.

    Keys of the `inputs` object that name no signature input are ignored, as there.
    """
    names = sorted(info.inputs)
    if not _named_inputs(inputs):
        if len(names) > 1:
            raise InvalidArgumentError(
                "inputs is a plain value/list, but expecting an object as multiple input "
                "tensors required as per tensorinfo_map"
            )
        return _convert({names[0]: inputs}, info)
    assert isinstance(inputs, dict)
    for name in names:
        if name not in inputs:
            raise InvalidArgumentError(f"Missing named input: {name} in 'inputs' object.")
    return _convert({name: inputs[name] for name in names}, info)


def _convert(columns: Mapping[str, object], info: SignatureInfo) -> dict[str, np.ndarray]:
    return {
        name: tensors.from_json(value, info.inputs[name].dtype, f"Input {name!r}")
        for name, value in columns.items()
    }


def predict_response(
    service: InferenceService, target: Target, body: dict[str, Any]
) -> tuple[dict[str, Any], str]:
    """A REST predict, as json_tensor.cc FillPredictRequestFromJson / MakeJsonFromTensors."""
    fmt: list[str] = []

    def build(info: SignatureInfo) -> dict[str, np.ndarray]:
        # Checked once the signature is known, as TF Serving does (GetInfoMap first).
        if "instances" in body:
            if "inputs" in body:
                raise _format_error(
                    body,
                    "Not formatted correctly expecting only one of 'inputs' or 'instances' "
                    "keys to exist ",
                )
            instances = body["instances"]
            if not isinstance(instances, list):
                raise _format_error(body, "Expecting 'instances' to be an list/array")
            if not instances:
                raise _format_error(body, "No values in 'instances' array")
            fmt.append("row")
            return _rows_to_arrays(instances, info)
        if "inputs" in body:
            fmt.append("columnar")
            return _columns_to_arrays(body["inputs"], info)
        raise InvalidArgumentError("Missing 'inputs' or 'instances' key")

    result = service.run(target, build)
    values = result.values
    if not values:
        raise InvalidArgumentError("Cannot convert empty tensor map to JSON")
    if fmt == ["columnar"]:
        if len(values) == 1:
            ((name, value),) = values.items()
            return {"outputs": tensors.to_json(value, name)}, str(result.version)
        return {"outputs": {k: tensors.to_json(v, k) for k, v in values.items()}}, str(
            result.version
        )
    # MakeRowFormatJsonFromTensors: every output needs the same first (batch) dimension.
    batch = -1
    for name in sorted(values):
        value = values[name]
        if value.ndim == 0:
            raise InvalidArgumentError(f"Tensor name: {name} has no shape information ")
        if batch >= 0 and value.shape[0] != batch:
            raise InvalidArgumentError(
                f"Tensor name: {name} has inconsistent batch size: {value.shape[0]} "
                f"expecting: {batch}"
            )
        batch = value.shape[0]
    if len(values) == 1:
        ((name, value),) = values.items()
        return {"predictions": tensors.to_json(value, name)}, str(result.version)
    columns = {k: tensors.to_json(v, k) for k, v in values.items()}
    rows = [{k: col[i] for k, col in columns.items()} for i in range(batch)]  # type: ignore[index]
    return {"predictions": rows}, str(result.version)


def _json_depth_ok(value: object) -> bool:
    """True when `value` nests at most MAX_JSON_DEPTH arrays/objects (iterative: no recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (list, dict)):
            if depth > MAX_JSON_DEPTH:
                return False
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return True


# A JSON string, for removing strings' contents before counting structural characters.
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
# A \uD800-\uDFFF escape: a surrogate, valid only as half of a pair.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


# JSON containers (objects, arrays) allowed per example: a classify example is an object with
# a list per feature; a predict row is an object or list with {"b64": ...} wrappers.
CONTAINERS_PER_EXAMPLE = 64


@dataclasses.dataclass(frozen=True)
class JsonBudget:
    """How many JSON values and containers a request body may hold, from the request limits.

    Python holds each parsed value as an object (a float 24 bytes, a dict 64 or more), so
    these bound what parsing a body may cost, the way the limits bound its tensors:
    values: elements plus two per example (its container and separator slack);
    containers: CONTAINERS_PER_EXAMPLE per example.
    """

    values: int
    containers: int

    @classmethod
    def of(cls, limits: RequestLimits) -> JsonBudget:
        """The budget of a server's request limits."""
        return cls(
            limits.max_elements + 2 * limits.max_examples,
            CONTAINERS_PER_EXAMPLE * limits.max_examples,
        )


def _counts(raw: bytes) -> tuple[int, int]:
    # Every value but the first follows a `[`, `,` or `:`; every container opens with `{`/`[`.
    return (
        1 + raw.count(b",") + raw.count(b"[") + raw.count(b":"),
        raw.count(b"{") + raw.count(b"["),
    )


def check_value_count(raw: bytes, limits: RequestLimits) -> None:
    """Refuses a body with more JSON values or containers than its budget, before parsing.

    The counts over the raw bytes (strings included: an upper bound) cost a few C scans; only
    when one exceeds its budget are the strings blanked and the counts repeated, exactly.
    Either way the cost is linear in the body's bytes (which `max_request_bytes` bounds),
    where `json.loads` of 64 MiB of `{},` built 22 million dicts (110 s, +3.2 GB) before the
    example limit applied (issue 17).

    Raises:
      InvalidArgumentError: Naming the limit.
    """
    budget = JsonBudget.of(limits)
    values, containers = _counts(raw)
    if values <= budget.values and containers <= budget.containers:
        return
    values, containers = _counts(_STRING.sub(b'""', raw))
    if values > budget.values:
        raise InvalidArgumentError(
            f"Request body has about {values} JSON values, more than the limit of "
            f"{budget.values} (max_request_elements {limits.max_elements} + 2 x "
            f"max_examples_per_request {limits.max_examples})"
        )
    if containers > budget.containers:
        raise InvalidArgumentError(
            f"Request body has {containers} JSON objects and arrays, more than the limit of "
            f"{budget.containers} ({CONTAINERS_PER_EXAMPLE} x max_examples_per_request "
            f"{limits.max_examples})"
        )


def _check_strings(body: object, raw: bytes) -> None:
    """Refuses lone surrogate escapes ("\\ud800"), which Python's parser lets through.

    rapidjson (json_tensor.cc ParseJson) refuses them as "The surrogate pair in string is
    invalid."; here they failed later, when the string was encoded (500).
    """
    if _SURROGATE_ESCAPE.search(raw) is None:
        return
    try:
        json.dumps(body, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as e:
        raise InvalidArgumentError(
            "JSON Parse error: The surrogate pair in string is invalid. "
            f"({e.object[e.start : e.end]!a})"
        ) from None


def parse_body(raw: bytes, limits: RequestLimits | None = None) -> dict[str, Any]:
    """The request body, as json_tensor.cc ParseJson (its error texts) and FillSignature.

    `NaN`, `Infinity` and `-Infinity` parse, as with rapidjson's kParseNanAndInfFlag there;
    input validation refuses non-finite values of features whose schema domain disallows
    them (`schema.FeatureSpec`).

    Args:
      raw: The body.
      limits: Request limits; the body's JSON value count is checked against them first.

    Raises:
      InvalidArgumentError: Malformed, too deep, too many values, invalid strings.
    """
    if not raw:
        raise InvalidArgumentError("JSON Parse error: The document is empty")
    check_value_count(raw, limits or RequestLimits())
    try:
        body = json.loads(raw)
    except json.JSONDecodeError as e:
        raise InvalidArgumentError(f"JSON Parse error: {e.msg} at offset: {e.pos}") from None
    except UnicodeDecodeError as e:
        raise InvalidArgumentError(
            f"JSON Parse error: Invalid encoding in string. at offset: {e.start}"
        ) from None
    except RecursionError:  # the parser recurses per nesting level
        raise InvalidArgumentError(
            f"JSON Parse error: nested deeper than {MAX_JSON_DEPTH} levels"
        ) from None
    if not isinstance(body, dict):
        raise _format_error(body, "Is not object")
    if not _json_depth_ok(body):
        raise InvalidArgumentError(f"JSON Parse error: nested deeper than {MAX_JSON_DEPTH} levels")
    _check_strings(body, raw)
    if not isinstance(body.get("signature_name", ""), str):
        raise _format_error(
            body, "not formatted correctly. 'signature_name' key must be a string value."
        )
    return body


class RouteError(InvalidArgumentError):
    """A path that matched a route but whose parts do not convert.

    http_rest_api_handler.cc (ProcessRequest) returns ParseModelInfo's error before it
    writes the JSON error body: TF Serving answers 400 with an empty body.
    """


def route_version(text: str | None) -> int | None:
    """The URL's version number; one beyond int64 is refused as TF Serving's SimpleAtoi does.

    tensorflow_serving/model_servers/http_rest_api_util.cc (ParseModelInfo).
    """
    if text is None:
        return None
    # Checked on the text first: Python refuses int() of more than 4,300 digits (ValueError).
    if len(text.lstrip("0")) > len(str(_INT64_MAX)) or int(text) > _INT64_MAX:
        raise RouteError(f"Failed to convert version: {text} to numeric.")
    return int(text)


def decode_arg(text: str | None) -> str | None:
    """A model name or label as http_rest_api_util.cc DecodeArg (curl_easy_unescape) decodes it.

    %XX escapes are decoded, '+' is kept. Escapes that do not decode as UTF-8 (`%ff`) are
    INVALID_ARGUMENT: TF Serving would look the raw bytes up (and not find them); here the
    name would carry lone surrogates into logs and labels.
    """
    if text is None:
        return None
    try:
        return urllib.parse.unquote(text, errors="strict")
    except UnicodeDecodeError:
        raise InvalidArgumentError(f"Model name or label {text!r} is not valid UTF-8") from None


def malformed(verb: str, path: str) -> ServingError:
    """An unknown route: TF Serving's INVALID_ARGUMENT (400) under `/v1/`, else NOT_FOUND.

    tensorflow_serving/model_servers/http_rest_api_handler.cc (ProcessRequest) answers
    "Malformed request: <verb> <path>" for every `(?i)/v1/.*` path its route regexes do not
    match (http_rest_api_util.cc); other paths reach no handler there (404).
    """
    message = f"Malformed request: {verb} {path}"
    if path.lower().startswith("/v1/"):
        return InvalidArgumentError(message)
    return NotFoundError(message)


def examples_json(body: dict[str, Any], limits: RequestLimits | None = None) -> list[bytes]:
    """Classify/regress examples, as json_tensor.cc FillClassifyRegressRequestFromJson.

    A context's features are merged into every example (an example's own feature wins), as
    TF Serving's ExampleListWithContext input does (`model_contract.with_context`).
    """
    context = json_example(body["context"]).SerializeToString() if "context" in body else None
    if "examples" not in body:
        # TF Serving says "classify" for regress requests too.
        raise _format_error(
            body, "When method is classify, key 'examples' is expected and was not found"
        )
    examples = body["examples"]
    if not isinstance(examples, list):
        raise _format_error(body, "Expecting 'examples' value to be an list/array")
    if not examples:
        raise _format_error(body, "'examples' value is an empty array")
    (limits or RequestLimits()).check_examples(len(examples))  # before any is converted
    out = [json_example(obj).SerializeToString() for obj in examples]
    return out if context is None else with_context(context, out)


def classify_response(
    service: InferenceService, target: Target, body: dict[str, Any]
) -> tuple[dict[str, Any], str]:
    """A REST classify, answered as json_tensor.cc MakeJsonFromClassificationResult writes it.

    `{"results": [[[label, score], ...], ...]}` (kClassifyRegressResponseKey).
    """
    result = service.classify_serialized(target, examples_json(body, service.limits))
    rows = [
        [[label, score] for label, score in zip(labels, scores, strict=True)]
        for labels, scores in classification_rows(result.values)
    ]
    return {"results": rows}, str(result.version)


def regress_response(
    service: InferenceService, target: Target, body: dict[str, Any]
) -> tuple[dict[str, Any], str]:
    """A REST regress: the examples run, {"results": [value, ...]} (json_tensor.cc)."""
    result = service.regress_serialized(target, examples_json(body, service.limits))
    return {"results": regression_values(result.values)}, str(result.version)


def encode(obj: object) -> bytes:
    """Compact JSON of a response body; a NaN or infinity in it is INVALID_ARGUMENT.

    TF Serving writes them as bare `NaN`/`Infinity` (json_tensor.cc WriteDecimal), which no
    strict JSON parser reads (issue 17: `{"results":[NaN]}`); inputs that produce them are
    what the client must fix (input validation refuses non-finite features the schema
    disallows).
    """
    try:
        return json.dumps(obj, separators=(",", ":"), allow_nan=False).encode()
    except ValueError:
        raise InvalidArgumentError(
            "The model's output holds NaN or Infinity, which JSON cannot carry: check the "
            "inputs for non-finite or out-of-range values"
        ) from None
