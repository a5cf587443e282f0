"""Parity with TF Serving 2.16.1, case by case from its source (each test names file and function).

Read at tensorflow/serving tag 2.16.1 (commit 0d726954f36a2b6c6bfb60a4caec311f2b3e3101). Every
test runs against the embedded server or, with SERVING_TEST_GRPC_ADDR/SERVING_TEST_REST_URL, a
real TF Serving (conftest.py), and asserts the status code and, where TF Serving's source fixes
it, the exact error text or JSON document. Lifecycle tests at the end need the embedded server.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    predict_pb2,
    regression_pb2,
)

from serving.client import ClientSettings, ModelRef, PredictionClient
from serving.errors import Code, ServingError
from serving.examples import example_to_json
from serving.server import ModelServer
from tests.serving.conftest import (
    MODEL,
    Served,
    Target,
    install_version,
    server_settings,
    wait_for,
)


def raw_http(
    target: Target,
    verb: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    """One raw HTTP exchange: (status, headers, body bytes), nothing decoded or retried."""
    parts = urlsplit(target.rest)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        conn.request(verb, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def rest(target: Target, verb: str, path: str, body: object | None = None) -> tuple[int, Any]:
    """A JSON exchange: (status, decoded JSON body); the body must be JSON."""
    data = None if body is None else json.dumps(body).encode()
    status, headers, raw = raw_http(target, verb, path, data, {"Content-Type": "application/json"})
    assert headers.get("Content-Type") == "application/json", headers
    return status, json.loads(raw)


def rest_error(target: Target, verb: str, path: str, body: object | None = None) -> tuple[int, str]:
    """An error exchange: (status, message); the body must be exactly {"error": <message>}."""
    status, payload = rest(target, verb, path, body)
    assert isinstance(payload, dict) and set(payload) == {"error"}, payload
    return status, payload["error"]


def grpc_error(fn: Callable[..., Any], *args: Any) -> ServingError:
    with pytest.raises(ServingError) as info:
        fn(*args)
    return info.value


def b64_examples(examples: list[bytes], n: int = 2) -> list[dict[str, str]]:
    return [{"b64": base64.b64encode(e).decode()} for e in examples[:n]]


def all_versions(target: Target) -> list[str]:
    status, body = rest(target, "GET", f"/v1/models/{target.model}")
    assert status == 200
    return [v["version"] for v in body["model_version_status"]]


# Routes: http_rest_api_util.cc (kPredictionApiGegex, kModelStatusApiRegex, ParseModelInfo,
# DecodeArg), http_rest_api_handler.cc (ProcessRequest), http_server.cc (dispatch, CORS) ---------


def test_routes_match_case_insensitively(target: Target, examples: list[bytes]) -> None:
    # Both route regexes start with (?i): the prefix and the keywords match in any case.
    status, body = rest(target, "GET", f"/V1/Models/{target.model}")
    assert status == 200 and "model_version_status" in body
    status, body = rest(
        target,
        "POST",
        f"/v1/MODELS/{target.model}:predict",
        {"instances": b64_examples(examples)},
    )
    assert status == 200 and len(body["predictions"]) == 2


def test_verbs_and_subresources_compare_case_sensitively(
    target: Target, examples: list[bytes]
) -> None:
    # ProcessRequest compares the captured method with "predict"/"classify"/"regress" and the
    # subresource with "metadata": the regex accepts ":PREDICT", the dispatch does not, and
    # "/METADATA" falls through to the status request.
    path = f"/v1/models/{target.model}:PREDICT"
    status, message = rest_error(target, "POST", path, {"instances": b64_examples(examples)})
    assert (status, message) == (400, f"Malformed request: POST {path}")
    status, body = rest(target, "GET", f"/v1/models/{target.model}/METADATA")
    assert status == 200 and set(body) == {"model_version_status"}


@pytest.mark.parametrize(
    "verb,path",
    [
        ("GET", "/v1/models/{m}/versions/-1"),  # versions are (\d+): no sign
        ("GET", "/v1/models/{m}/versions/one"),
        ("GET", "/v1/models/{m}/"),  # full match: no trailing slash
        ("GET", "/v1/models/{m}:predict"),  # the GET regex has no verb
        ("GET", "/v1/models/{m}/versions/1/labels/stable"),  # version or label, not both
        ("POST", "/v1/models/{m}"),  # the POST regex needs a verb
        ("POST", "/v1/models/{m}/metadata"),
        ("POST", "/v1/models/{m}:explain"),
        ("PUT", "/v1/models/{m}"),  # only GET and POST are parsed
        ("DELETE", "/v1/models/{m}"),
        ("GET", "/v1/other"),
    ],
)
def test_unrouted_v1_paths_are_malformed_requests(target: Target, verb: str, path: str) -> None:
    # ProcessRequest starts from InvalidArgument("Malformed request: ", method, " ", path) and
    # keeps it when no handler runs; MakeJsonFromStatus writes it as {"error": ...}.
    path = path.format(m=target.model)
    body = {"instances": [1]} if verb == "POST" else None
    assert rest_error(target, verb, path, body) == (400, f"Malformed request: {verb} {path}")


def test_no_verb_is_method_not_allowed(target: Target) -> None:
    # ProcessRequest answers every verb under /v1/ (there is no 405); HEAD too, whose reply
    # carries no body (libevent drops it).
    path = f"/v1/models/{target.model}"
    status, _, body = raw_http(target, "HEAD", path)
    assert (status, body) == (400, b"")


@pytest.mark.parametrize("path", ["/v1/models", "/v1/models/versions/1"])
def test_a_get_without_model_name(target: Target, path: str) -> None:
    # kModelStatusApiRegex makes the name optional; ProcessModelStatusRequest and
    # ProcessModelMetadataRequest then answer "Missing model name in request.".
    assert rest_error(target, "GET", path) == (400, "Missing model name in request.")


def test_version_beyond_int64_is_400_without_body(target: Target) -> None:
    # ParseModelInfo: absl::SimpleAtoi fails -> "Failed to convert version: ... to numeric.",
    # returned by ProcessRequest before MakeJsonFromStatus: the reply has no body.
    big = str(2**63)
    status, _, body = raw_http(target, "GET", f"/v1/models/{target.model}/versions/{big}")
    assert (status, body) == (400, b"")
    status, _, body = raw_http(
        target, "POST", f"/v1/models/{target.model}/versions/{big}:predict", b"{}"
    )
    assert (status, body) == (400, b"")


def test_model_name_and_label_are_percent_decoded(target: Target) -> None:
    # ParseModelInfo: DecodeArg (curl_easy_unescape) on the name and the label.
    encoded = "".join(f"%{ord(c):02X}" for c in target.model)
    assert rest(target, "GET", f"/v1/models/{encoded}") == rest(
        target, "GET", f"/v1/models/{target.model}"
    )
    status, body = rest(target, "GET", f"/v1/models/{encoded}/metadata")
    assert status == 200 and body["model_spec"]["name"] == target.model
    if target.labels:
        label, version = next(iter(target.labels.items()))
        quoted = "".join(f"%{ord(c):02X}" for c in label)
        status, body = rest(target, "GET", f"/v1/models/{target.model}/labels/{quoted}/metadata")
        assert status == 200 and body["model_spec"]["version"] == str(version)


def test_cors_preflight(target: Target) -> None:
    # http_server.cc (RestApiRequestDispatcher::ProcessRequest): OPTIONS is answered without
    # a body, OK for an http(s) Origin, FAILED_PRECONDITION (400) without one.
    path = f"/v1/models/{target.model}:predict"
    status, _, body = raw_http(target, "OPTIONS", path, headers={"Origin": "https://app.example"})
    assert (status, body) == (200, b"")
    status, _, body = raw_http(target, "OPTIONS", path)
    assert (status, body) == (400, b"")


def test_error_bodies_are_one_error_member(target: Target) -> None:
    # json_tensor.cc MakeJsonFromStatus: {"error": <status message>} as application/json,
    # with the HTTP status of http_server.cc ToHTTPStatusCode (NOT_FOUND -> 404).
    status, _ = rest_error(target, "GET", "/v1/models/no_such_model")
    assert status == 404


# GetModelStatus: get_model_status_impl.cc, http_rest_api_util.cc (ToJsonString),
# tensorflow_model_server_test.py (testGetModelStatus, testGetStatusREST) ------------------------


def test_status_not_found_texts(target: Target, grpc_client: PredictionClient) -> None:
    # GetModelStatusWithModelSpec: with a version "Could not find version <v> of model <m>",
    # without "Could not find any versions of model <m>", both NOT_FOUND.
    m = target.model
    cases = [
        (f"/v1/models/{m}/versions/999", f"Could not find version 999 of model {m}"),
        ("/v1/models/no_such_model", "Could not find any versions of model no_such_model"),
        (
            "/v1/models/no_such_model/versions/3",
            "Could not find version 3 of model no_such_model",
        ),
    ]
    for path, message in cases:
        assert rest_error(target, "GET", path) == (404, message)
    error = grpc_error(grpc_client.model_status, ModelRef(m, version=999))
    assert (error.code, error.message) == (
        Code.NOT_FOUND,
        f"Could not find version 999 of model {m}",
    )
    error = grpc_error(grpc_client.model_status, ModelRef("no_such_model"))
    assert error.message == "Could not find any versions of model no_such_model"


def test_status_of_a_model_without_versions(target: Target) -> None:
    # A configured model whose base path has no version yet has no states in the
    # ServableStateMonitor: "Could not find any versions of model <m>" (NOT_FOUND).
    if not target.embedded:
        pytest.skip("needs a configured model without versions")
    assert rest_error(target, "GET", "/v1/models/pending") == (
        404,
        "Could not find any versions of model pending",
    )


def test_status_reads_no_version_label(target: Target, grpc_client: PredictionClient) -> None:
    # GetModelStatusWithModelSpec narrows only on model_spec.has_version(): a version label,
    # known or not, is not read and every version is reported.
    everything = all_versions(target)
    for label in [*target.labels, "no_such_label"]:
        status, body = rest(target, "GET", f"/v1/models/{target.model}/labels/{label}")
        assert status == 200
        assert [v["version"] for v in body["model_version_status"]] == everything
        by_grpc = grpc_client.model_status(ModelRef(target.model, label=label))
        assert [str(s["version"]) for s in by_grpc] == everything


def test_status_lists_versions_ascending(target: Target) -> None:
    # ServableStateMonitor::VersionMap is ordered by version; REST prints int64 as strings.
    versions = all_versions(target)
    assert versions == sorted(versions, key=int) and all(isinstance(v, str) for v in versions)


def test_status_requires_a_model_spec(grpc_client: PredictionClient) -> None:
    # GetModelStatusImpl::GetModelStatus: no model_spec -> INVALID_ARGUMENT "Missing ModelSpec".
    request = get_model_status_pb2.GetModelStatusRequest()
    error = grpc_error(grpc_client._call, grpc_client._models.GetModelStatus, request)
    assert (error.code, error.message) == (Code.INVALID_ARGUMENT, "Missing ModelSpec")


# GetModelMetadata: get_model_metadata_impl.cc, tensorflow_model_server_test.py
# (testGetModelMetadata, testGetModelMetadataREST) -----------------------------------------------


def test_metadata_request_checks(target: Target, grpc_client: PredictionClient) -> None:
    call = grpc_client._prediction.GetModelMetadata
    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    error = grpc_error(grpc_client._call, call, request)
    assert (error.code, error.message) == (Code.INVALID_ARGUMENT, "Missing ModelSpec")
    request.model_spec.name = target.model
    del request.metadata_field[:]
    error = grpc_error(grpc_client._call, call, request)
    assert error.message == "GetModelMetadataRequest must specify at least one metadata_field"
    request.metadata_field.append("inputs")
    error = grpc_error(grpc_client._call, call, request)
    assert (error.code, error.message) == (
        Code.INVALID_ARGUMENT,
        "Metadata field inputs is not supported",
    )


def test_metadata_not_found_texts(target: Target) -> None:
    # SavedModelGetSignatureDef -> ServerCore::GetServableHandle -> basic_manager.cc
    # GetUntypedServableHandle: "Servable not found for request: <ServableRequest>"
    # (core/manager.h DebugString: Latest(name) / Specific(name, version)).
    assert rest_error(target, "GET", "/v1/models/no_such_model/metadata") == (
        404,
        "Servable not found for request: Latest(no_such_model)",
    )
    assert rest_error(target, "GET", f"/v1/models/{target.model}/versions/999/metadata") == (
        404,
        f"Servable not found for request: Specific({target.model}, 999)",
    )


# Servable lookup: server_core.cc (ServableRequestFromModelSpec, GetModelVersionForLabel),
# basic_manager.cc (GetUntypedServableHandle) -----------------------------------------------------


def test_servable_not_found_texts(
    target: Target, grpc_client: PredictionClient, examples: list[bytes]
) -> None:
    error = grpc_error(grpc_client.predict, ModelRef("no_such_model"), examples[:1])
    assert (error.code, error.message) == (
        Code.NOT_FOUND,
        "Servable not found for request: Latest(no_such_model)",
    )
    error = grpc_error(grpc_client.classify, ModelRef(target.model, version=999), examples[:1])
    assert (error.code, error.message) == (
        Code.NOT_FOUND,
        f"Servable not found for request: Specific({target.model}, 999)",
    )


def test_unknown_label_is_invalid_argument(
    target: Target, grpc_client: PredictionClient, examples: list[bytes]
) -> None:
    # GetModelVersionForLabel: InvalidArgument "Unrecognized servable version label: <l>",
    # for a known model and for an unknown one alike.
    for name in (target.model, "no_such_model"):
        error = grpc_error(grpc_client.predict, ModelRef(name, label="nope"), examples[:1])
        assert (error.code, error.message) == (
            Code.INVALID_ARGUMENT,
            "Unrecognized servable version label: nope",
        )
        assert rest_error(
            target,
            "POST",
            f"/v1/models/{name}/labels/nope:predict",
            {"instances": b64_examples(examples)},
        ) == (400, "Unrecognized servable version label: nope")


def test_a_request_without_model_spec_or_name(
    grpc_client: PredictionClient, examples: list[bytes]
) -> None:
    # predict_impl.cc, classification_service.cc, regression_service.cc: no ModelSpec is
    # "Missing ModelSpec"; server_core.cc ServableRequestFromModelSpec: a ModelSpec without
    # a name is "ModelSpec has no name specified.", both INVALID_ARGUMENT.
    request = predict_pb2.PredictRequest()
    request.inputs["examples"].CopyFrom(tf.make_tensor_proto(examples[:1], dtype=tf.string))
    error = grpc_error(grpc_client._call, grpc_client._prediction.Predict, request)
    assert (error.code, error.message) == (Code.INVALID_ARGUMENT, "Missing ModelSpec")
    request.model_spec.signature_name = "serving_default"
    error = grpc_error(grpc_client._call, grpc_client._prediction.Predict, request)
    assert (error.code, error.message) == (
        Code.INVALID_ARGUMENT,
        "ModelSpec has no name specified.",
    )
    for call, empty in (
        (grpc_client._prediction.Classify, classification_pb2.ClassificationRequest()),
        (grpc_client._prediction.Regress, regression_pb2.RegressionRequest()),
    ):
        empty.input.example_list.examples.add().CopyFrom(tf.train.Example.FromString(examples[0]))
        error = grpc_error(grpc_client._call, call, empty)
        assert (error.code, error.message) == (Code.INVALID_ARGUMENT, "Missing ModelSpec")


# gRPC Predict: servables/tensorflow/predict_util.cc (VerifyRequestInputsSize,
# PreProcessPrediction) --------------------------------------------------------------------------


def test_predict_input_count_and_output_filter_texts(
    grpc_client: PredictionClient, model: ModelRef, examples: list[bytes]
) -> None:
    batch = np.array(examples[:2], dtype=object)
    error = grpc_error(
        grpc_client.predict_tensors, model, {"examples": batch, "extra": np.zeros(2, np.float32)}
    )
    assert (error.code, error.message) == (
        Code.INVALID_ARGUMENT,
        "input size does not match signature: 2!=1 len({examples,extra}) != len({examples}). "
        "Sent extra: {extra}. Missing but required: {}.",
    )
    kwargs = {"signature": "classify", "input_name": "inputs"}
    error = grpc_error(
        lambda: grpc_client.predict(model, examples[:2], output_filter=["nope"], **kwargs)
    )
    assert (error.code, error.message) == (
        Code.INVALID_ARGUMENT,
        "output tensor alias not found in signature: nope Outputs expected to be in the set "
        "{classes,scores}.",
    )
    error = grpc_error(
        lambda: grpc_client.predict(model, examples[:2], output_filter=["scores"] * 2, **kwargs)
    )
    assert (error.code, error.message) == (
        Code.INVALID_ARGUMENT,
        "duplicate output tensor alias: scores",
    )


# REST predict: json_tensor.cc (ParseJson, FillSignature, FillPredictRequestFromJson,
# FillTensorMapFromInstancesList, FillTensorMapFromInputsMap), http_rest_api_handler.cc
# (ProcessPredictRequest, GetInfoMap), tensorflow_model_server_test.py (testPredictREST,
# testPredictColumnarREST) -----------------------------------------------------------------------


def _predict_path(target: Target) -> str:
    return f"/v1/models/{target.model}:predict"


def test_predict_body_parse_errors(target: Target) -> None:
    path = _predict_path(target)
    status, _, raw = raw_http(target, "POST", path, b"")
    assert (status, json.loads(raw)) == (400, {"error": "JSON Parse error: The document is empty"})
    status, _, raw = raw_http(target, "POST", path, b"{not json")
    message = json.loads(raw)["error"]
    assert status == 400 and message.startswith("JSON Parse error: ") and " at offset: " in message
    assert rest_error(target, "POST", path, [1, 2]) == (400, "JSON Value: [1,2] Is not object")
    status, message = rest_error(target, "POST", path, {"signature_name": 5, "instances": [1]})
    assert status == 400 and message.startswith("JSON Value: {")
    assert message.endswith("not formatted correctly. 'signature_name' key must be a string value.")


def test_predict_key_errors(target: Target, examples: list[bytes]) -> None:
    path, b64 = _predict_path(target), b64_examples(examples)
    status, message = rest_error(target, "POST", path, {"instances": b64, "inputs": b64})
    assert status == 400 and message.startswith("JSON Value: {")
    assert message.endswith(
        "Not formatted correctly expecting only one of 'inputs' or 'instances' keys to exist "
    )
    status, message = rest_error(target, "POST", path, {"instances": {"examples": b64}})
    assert status == 400 and message.endswith("Expecting 'instances' to be an list/array")
    status, message = rest_error(target, "POST", path, {"instances": []})
    assert (status, message) == (
        400,
        "JSON Value: {\"instances\":[]} No values in 'instances' array",
    )
    assert rest_error(target, "POST", path, {"instancez": b64}) == (
        400,
        "Missing 'inputs' or 'instances' key",
    )


def test_predict_row_errors(target: Target, examples: list[bytes]) -> None:
    path, b64 = _predict_path(target), b64_examples(examples)
    assert rest_error(target, "POST", path, {"instances": [{"wrong": b64[0]}]}) == (
        400,
        "Failed to process element: 0 key: wrong of 'instances' list. Error: "
        "INVALID_ARGUMENT: JSON object: does not have named input: wrong",
    )
    # The first element decides: objects of named inputs, or plain values (b64 is a value).
    assert rest_error(target, "POST", path, {"instances": [{"examples": b64[0]}, b64[1]]}) == (
        400,
        "Expecting object but got list at item 1 of input list",
    )
    assert rest_error(target, "POST", path, {"instances": [b64[0], {"examples": b64[1]}]}) == (
        400,
        "Expecting value/list but got object at item 1 of input list",
    )
    # Every object must name exactly the signature's inputs.
    assert rest_error(target, "POST", path, {"instances": [{"examples": b64[0]}, {}]}) == (
        400,
        "Failed to process element: 1 of 'instances' list. JSON object: {} keys must be equal "
        "to: examples",
    )


def test_predict_unknown_signature(target: Target, examples: list[bytes]) -> None:
    # GetInfoMap: InvalidArgument 'Serving signature name: "<s>" not found in signature def'.
    assert rest_error(
        target,
        "POST",
        _predict_path(target),
        {"signature_name": "nope", "instances": b64_examples(examples)},
    ) == (400, 'Serving signature name: "nope" not found in signature def')


def test_predict_looks_up_the_servable_before_reading_the_inputs(target: Target) -> None:
    # ProcessPredictRequest: GetInfoMap (the servable handle) runs before the instances are
    # read, so an unknown model is NOT_FOUND whatever the body holds.
    status, message = rest_error(
        target, "POST", "/v1/models/no_such_model:predict", {"instances": [], "inputs": []}
    )
    assert (status, message) == (404, "Servable not found for request: Latest(no_such_model)")


def test_predict_columnar_ignores_keys_that_name_no_input(
    target: Target, examples: list[bytes]
) -> None:
    # FillTensorMapFromInputsMap looks up each signature input in the object; other keys
    # are never read. A missing one is "Missing named input: <n> in 'inputs' object.".
    path, b64 = _predict_path(target), b64_examples(examples)
    status, body = rest(target, "POST", path, {"inputs": {"examples": b64, "extra": [1.0]}})
    assert status == 200 and len(body["outputs"]) == 2
    assert rest_error(target, "POST", path, {"inputs": {"other": b64}}) == (
        400,
        "Missing named input: examples in 'inputs' object.",
    )


# REST classify/regress: json_tensor.cc (FillClassifyRegressRequestFromJson,
# MakeExampleFromJsonObject, AddValueToFeature, MakeJsonFromClassificationResult,
# MakeJsonFromRegressionResult), tensorflow_model_server_test.py (testClassifyREST,
# testRegressREST) -------------------------------------------------------------------------------


def _json_examples(examples: list[bytes], n: int = 2) -> list[dict[str, Any]]:
    return [example_to_json(tf.train.Example.FromString(e)) for e in examples[:n]]


@pytest.mark.parametrize("verb", ["classify", "regress"])
def test_examples_key_errors(target: Target, verb: str) -> None:
    path = f"/v1/models/{target.model}:{verb}"
    # The missing-key text says "classify" for :regress too.
    assert rest_error(target, "POST", path, {"signature_name": verb}) == (
        400,
        f'JSON Value: {{"signature_name":"{verb}"}} When method is classify, key '
        "'examples' is expected and was not found",
    )
    status, message = rest_error(target, "POST", path, {"examples": {"a": 1}})
    assert status == 400 and message.endswith("Expecting 'examples' value to be an list/array")
    assert rest_error(target, "POST", path, {"examples": []}) == (
        400,
        "JSON Value: {\"examples\":[]} 'examples' value is an empty array",
    )
    assert rest_error(target, "POST", path, {"examples": [3]}) == (
        400,
        "Example must be JSON object but got JSON Number",
    )


@pytest.mark.parametrize(
    "value,message",
    [
        (None, "Feature: f has element with unexpected JSON type: Null"),
        ([[1]], "Feature: f has element with unexpected JSON type: Array"),
        ({"x": 1}, "Feature: f has element with unexpected JSON type: Object"),
        ([1, 2.5], "Unexpected element type in feature: f expecting type: int64"),
        ([2.5, 1], "Unexpected element type in feature: f expecting type: float"),
        (["a", 1], "Unexpected element type in feature: f expecting type: bytes"),
        ([True, "a"], "Unexpected element type in feature: f expecting type: int64"),
        (2**63, "Feature: f has uint64_t element. Only int64_t is supported."),
        ({"b64": "!!"}, "Unable to base64 decode"),
    ],
)
def test_example_feature_errors(
    target: Target, examples: list[bytes], value: object, message: str
) -> None:
    # AddValueToFeature: the first value fixes the feature's kind. The conversion runs before
    # the servable is looked up (ProcessClassifyRequest), so even an unknown model gets 400.
    example = {**_json_examples(examples, 1)[0], "f": value}
    for name in (target.model, "no_such_model"):
        path = f"/v1/models/{name}:regress"
        assert rest_error(
            target, "POST", path, {"signature_name": "regress", "examples": [example]}
        ) == (
            400,
            message,
        )


def test_example_booleans_are_int64(target: Target, examples: list[bytes]) -> None:
    # AddValueToFeature: JSON true/false become int64 1/0; integers beyond int64 and below
    # uint64 are refused above, beyond uint64 rapidjson reads a double (a float feature).
    rows = _json_examples(examples)
    path = f"/v1/models/{target.model}:regress"
    hour = "trip_start_hour"
    as_int = [{**row, hour: 1} for row in rows]
    as_bool = [{**row, hour: True} for row in rows]
    status, expected = rest(target, "POST", path, {"signature_name": "regress", "examples": as_int})
    assert status == 200
    assert rest(target, "POST", path, {"signature_name": "regress", "examples": as_bool}) == (
        200,
        expected,
    )


def test_context_features_apply_to_every_example(target: Target, examples: list[bytes]) -> None:
    # FillClassifyRegressRequestFromJson: "context" is the ExampleListWithContext context.
    rows = _json_examples(examples)
    path = f"/v1/models/{target.model}:classify"
    common = {"payment_type": rows[0]["payment_type"]}
    stripped = [{k: v for k, v in row.items() if k != "payment_type"} for row in rows]
    with_context = {"signature_name": "classify", "context": common, "examples": stripped}
    merged = [{**row, **common} for row in rows]
    status, body = rest(target, "POST", path, with_context)
    assert status == 200
    assert body == rest(target, "POST", path, {"signature_name": "classify", "examples": merged})[1]
    status, message = rest_error(target, "POST", path, {**with_context, "context": [1]})
    assert (status, message) == (400, "Example must be JSON object but got JSON Array")


# Load failures and retries: core/loader_harness.cc (Load), util/retrier.cc (Retry),
# core/basic_manager.cc (ExecuteLoad, the harness error callback publishing kEnd),
# get_model_status_impl.cc (ManagerStateToStateProtoEnum, ToStatusProto) ------------------------


def _states(served: Served, version: int) -> tuple[str, str, str]:
    try:
        (status,) = served.client.model_status(ModelRef(MODEL, version=version))
    except ServingError:
        return ("", "", "")
    return status["state"], status["error_code"], status["error_message"]


def _load_errors(served: Served) -> float:
    registry = served.server.metrics.registry
    value = registry.get_sample_value(
        "serving_version_loads_total", {"model": MODEL, "outcome": "error"}
    )
    return value or 0.0


def test_load_retries_report_loading_then_end_with_the_error(
    serve_model: Callable[..., Served],
) -> None:
    # Retry() runs 1 + max_num_load_retries attempts inside one LoaderHarness::Load: the
    # version stays LOADING with an OK status throughout, then the error callback publishes
    # END with the last attempt's error. Never END before the attempts are spent.
    served = serve_model(
        versions=(1,),
        max_num_load_retries=2,
        load_retry_interval_s=0.3,
        file_system_poll_s=0.05,
        rest_port=0,
    )
    broken = Path(served.base) / ".staging"
    broken.mkdir()
    (broken / "saved_model.pb").write_bytes(b"not a SavedModel")
    os.rename(broken, Path(served.base) / "2")
    seen: list[tuple[str, str, str]] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        state = _states(served, 2)
        if not seen or seen[-1] != state:
            seen.append(state)
        if state[0] == "END":
            break
        time.sleep(0.02)
    assert seen[-1][0] == "END", seen
    assert all(s in {("", "", ""), ("START", "OK", ""), ("LOADING", "OK", "")} for s in seen[:-1])
    assert ("LOADING", "OK", "") in seen
    _, code, message = seen[-1]
    assert code != "OK" and message and "load attempt" not in message
    assert _load_errors(served) == 3  # 1 + max_num_load_retries attempts
    # Over REST (ToJsonString, always_print_primitive_fields): the code's enum name.
    here = Target("", f"http://127.0.0.1:{served.server.rest_port}", MODEL, True, {})
    assert rest(here, "GET", f"/v1/models/{MODEL}/versions/2") == (
        200,
        {
            "model_version_status": [
                {
                    "version": "2",
                    "state": "END",
                    "status": {"error_code": code, "error_message": message},
                }
            ]
        },
    )
    # The previous version kept serving throughout.
    assert _states(served, 1) == ("AVAILABLE", "OK", "")


def test_a_retrying_version_ends_when_a_newer_one_is_aspired(
    serve_model: Callable[..., Served], model_library: dict[int, str]
) -> None:
    # aspired_versions_manager.cc: a version leaving the aspired set has its load retries
    # cancelled (CancelLoadServableRetry); its load then fails and it is published END with
    # the error.
    served = serve_model(
        versions=(1,), max_num_load_retries=5, load_retry_interval_s=30.0, file_system_poll_s=0.05
    )
    broken = Path(served.base) / ".staging"
    broken.mkdir()
    (broken / "saved_model.pb").write_bytes(b"not a SavedModel")
    os.rename(broken, Path(served.base) / "2")
    wait_for(lambda: _load_errors(served) == 1, 30)
    assert _states(served, 2) == ("LOADING", "OK", "")  # a retry is due in 30 s
    install_version(model_library, 2, served.base, 3)
    served.server.manager.wait_until_available(MODEL, 3, 60)
    wait_for(lambda: _states(served, 2)[0] == "END", 30)
    _, code, message = _states(served, 2)
    assert code != "OK" and message


def test_unloaded_versions_stay_in_status_as_end(
    serve_model: Callable[..., Served], model_library: dict[int, str]
) -> None:
    # servable_state_monitor.cc keeps every version's last state (ForgetUnloadedServableStates
    # is never called by the model server): an unloaded version is END with an OK status,
    # also after its directory is deleted.
    served = serve_model(versions=(1,), file_system_poll_s=0.05)
    install_version(model_library, 2, served.base, 2)
    served.server.manager.wait_until_available(MODEL, 2, 60)
    wait_for(lambda: _states(served, 1)[0] == "END", 30)
    shutil.rmtree(Path(served.base) / "1")
    served.server.manager.poll_once()  # a full scan after the deletion
    assert _states(served, 1) == ("END", "OK", "")
    statuses = served.client.model_status(ModelRef(MODEL))
    assert [(s["version"], s["state"]) for s in statuses] == [(1, "END"), (2, "AVAILABLE")]


# Metadata lists every SignatureDef: get_model_metadata_impl.cc (SavedModelGetSignatureDef) --


def test_metadata_lists_every_signature_def(target: Target) -> None:
    # The map is copied whole from the MetaGraphDef, TF2's `__saved_model_init_op` included.
    status, body = rest(target, "GET", f"/v1/models/{target.model}/metadata")
    assert status == 200
    sigs = body["metadata"]["signature_def"]["signature_def"]
    assert "__saved_model_init_op" in sigs and sigs["__saved_model_init_op"]["method_name"] == ""


def test_a_model_removed_from_the_config_keeps_its_end_states(
    tmp_path: Path, model_library: dict[int, str]
) -> None:
    # server_core.cc ReloadConfig stops aspiring the removed model's versions; they unload
    # and the ServableStateMonitor keeps their END states (servable_state_monitor.cc).
    bases = {name: str(tmp_path / name) for name in (MODEL, "second")}
    for base in bases.values():
        install_version(model_library, 1, base, 1)
    config = tmp_path / "models.config"

    def write(names: tuple[str, ...]) -> None:
        entries = " ".join(
            f'config {{ name: "{n}" base_path: "{bases[n]}" model_platform: "tensorflow" }}'
            for n in names
        )
        tmp = tmp_path / "models.config.tmp"
        tmp.write_text(f"model_config_list {{ {entries} }}")
        os.replace(tmp, config)

    write((MODEL, "second"))
    settings = server_settings(
        model_config_file=str(config), model_config_file_poll_s=0.1, rest_port=None
    )
    with ModelServer(settings) as server:
        server.manager.wait_until_available("second", 1, 60)
        client = PredictionClient(ClientSettings(f"127.0.0.1:{server.grpc_port}", max_retries=0))
        try:
            time.sleep(0.05)  # a later mtime than the first write's
            write((MODEL,))

            def second() -> list[tuple[int, str, str]]:
                return [
                    (s["version"], s["state"], s["error_code"])
                    for s in client.model_status(ModelRef("second"))
                ]

            wait_for(lambda: second() == [(1, "END", "OK")], 30)
            error = grpc_error(client.predict, ModelRef("second"), [b""])
            assert error.message == "Servable not found for request: Latest(second)"
        finally:
            client.close()
