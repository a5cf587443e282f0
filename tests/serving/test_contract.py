"""Contract tests of every gRPC RPC and REST route, against the embedded or an external server."""

from __future__ import annotations

import base64
import concurrent.futures
import json

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.framework import types_pb2

from serving import tensors
from serving.client import ModelRef, PredictionClient, RestClient
from serving.errors import Code, ServingError
from serving.examples import example_to_json
from tests.serving.conftest import MAX_REQUEST_BYTES, Target, latest_version, mutate


def embedded_only(target: Target, why: str) -> None:
    if not target.embedded:
        pytest.skip(f"Only the embedded server can be set up for this: {why}")


def expect(code: Code | set[Code], fn, *args, **kwargs) -> ServingError:  # type: ignore[no-untyped-def]
    with pytest.raises(ServingError) as info:
        fn(*args, **kwargs)
    codes = code if isinstance(code, set) else {code}
    assert info.value.code in codes, info.value.message
    assert info.value.message
    return info.value


# gRPC PredictionService ------------------------------------------------------------------------


def test_predict(grpc_client: PredictionClient, model: ModelRef, examples: list[bytes]) -> None:
    result = grpc_client.predict(model, examples)
    probs = result.outputs["probabilities"]
    assert probs.shape == (len(examples), 1) and probs.dtype == np.float32
    assert np.all((probs > 0) & (probs < 1))
    assert result.version == latest_version(grpc_client, model)


def test_predict_by_version_and_label(
    grpc_client: PredictionClient, target: Target, examples: list[bytes]
) -> None:
    if not target.labels:
        pytest.skip("SERVING_TEST_LABELS not set")
    for label, version in target.labels.items():
        by_label = grpc_client.predict(ModelRef(target.model, label=label), examples)
        by_version = grpc_client.predict(ModelRef(target.model, version=version), examples)
        assert by_label.version == by_version.version == version
        np.testing.assert_allclose(
            by_label.outputs["probabilities"], by_version.outputs["probabilities"]
        )
    if target.embedded:
        a = grpc_client.predict(ModelRef(target.model, version=1), examples).outputs[
            "probabilities"
        ]
        b = grpc_client.predict(ModelRef(target.model, version=2), examples).outputs[
            "probabilities"
        ]
        assert not np.allclose(a, b)


def test_predict_output_filter(
    grpc_client: PredictionClient, model: ModelRef, examples: list[bytes]
) -> None:
    result = grpc_client.predict(
        model, examples, signature="classify", input_name="inputs", output_filter=["scores"]
    )
    assert set(result.outputs) == {"scores"}
    expect(
        Code.INVALID_ARGUMENT,
        grpc_client.predict,
        model,
        examples,
        signature="classify",
        input_name="inputs",
        output_filter=["nope"],
    )


def test_classify_and_regress(
    grpc_client: PredictionClient, model: ModelRef, examples: list[bytes]
) -> None:
    probs = grpc_client.predict(model, examples).outputs["probabilities"][:, 0]
    classified = grpc_client.classify(model, examples)
    assert classified.version == latest_version(grpc_client, model)
    assert [[label for label, _ in row] for row in classified.classes] == [["0", "1"]] * len(
        examples
    )
    scores = np.array([[s for _, s in row] for row in classified.classes])
    np.testing.assert_allclose(scores.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(scores[:, 1], probs, rtol=1e-5)
    regressed = grpc_client.regress(model, examples)
    np.testing.assert_allclose(regressed.values, probs, rtol=1e-5)


def test_classify_with_context(
    grpc_client: PredictionClient, model: ModelRef, examples: list[bytes]
) -> None:
    from tensorflow_serving.apis import classification_pb2

    full = [tf.train.Example.FromString(e) for e in examples[:2]]
    request = classification_pb2.ClassificationRequest()
    request.model_spec.name = model.name
    request.model_spec.signature_name = "classify"
    context = request.input.example_list_with_context.context
    context.features.feature["payment_type"].CopyFrom(full[0].features.feature["payment_type"])
    for e in full:
        stripped = tf.train.Example()
        stripped.CopyFrom(e)
        del stripped.features.feature["payment_type"]
        request.input.example_list_with_context.examples.append(stripped)
    response = grpc_client._call(grpc_client._prediction.Classify, request)
    expected = grpc_client.classify(
        model,
        [
            mutate(
                e,
                payment_type=full[0].features.feature["payment_type"].bytes_list.value[0].decode(),
            )
            for e in examples[:2]
        ],
    )
    got = [[(c.label, c.score) for c in row.classes] for row in response.result.classifications]
    np.testing.assert_allclose(
        [[s for _, s in r] for r in got], [[s for _, s in r] for r in expected.classes], rtol=1e-5
    )


def test_get_model_metadata(grpc_client: PredictionClient, model: ModelRef) -> None:
    version, sig_map = grpc_client.metadata(model)
    assert version == latest_version(grpc_client, model)
    sigs = sig_map.signature_def
    assert {"serving_default", "classify", "regress"} <= set(sigs)
    assert sigs["classify"].method_name == "tensorflow/serving/classify"
    assert sigs["regress"].method_name == "tensorflow/serving/regress"
    assert sigs["serving_default"].inputs["examples"].dtype == types_pb2.DT_STRING
    assert set(sigs["classify"].outputs) == {"classes", "scores"}
    # get_model_metadata_impl.cc (SavedModelGetSignatureDef) copies every SignatureDef.
    assert "__saved_model_init_op" in sigs


def test_get_model_metadata_requires_field(grpc_client: PredictionClient, model: ModelRef) -> None:
    from tensorflow_serving.apis import get_model_metadata_pb2

    request = get_model_metadata_pb2.GetModelMetadataRequest()
    request.model_spec.name = model.name
    expect(
        Code.INVALID_ARGUMENT, grpc_client._call, grpc_client._prediction.GetModelMetadata, request
    )


# gRPC ModelService -----------------------------------------------------------------------------


def test_get_model_status(grpc_client: PredictionClient, target: Target) -> None:
    statuses = grpc_client.model_status(ModelRef(target.model))
    assert statuses and all(s["state"] == "AVAILABLE" and s["error_code"] == "OK" for s in statuses)
    one = grpc_client.model_status(ModelRef(target.model, version=statuses[0]["version"]))
    assert [s["version"] for s in one] == [statuses[0]["version"]]
    # get_model_status_impl.cc reads no version label: a label gets every version.
    for label in target.labels:
        by_label = grpc_client.model_status(ModelRef(target.model, label=label))
        assert [s["version"] for s in by_label] == [s["version"] for s in statuses]


# Errors ------------------------------------------------------------------------------------------


def test_not_found(grpc_client: PredictionClient, target: Target, examples: list[bytes]) -> None:
    missing = ModelRef("no_such_model")
    expect(Code.NOT_FOUND, grpc_client.predict, missing, examples)
    expect(Code.NOT_FOUND, grpc_client.classify, missing, examples)
    expect(Code.NOT_FOUND, grpc_client.regress, missing, examples)
    expect(Code.NOT_FOUND, grpc_client.metadata, missing)
    expect(Code.NOT_FOUND, grpc_client.model_status, missing)
    expect(Code.NOT_FOUND, grpc_client.predict, ModelRef(target.model, version=999), examples)
    expect(Code.NOT_FOUND, grpc_client.model_status, ModelRef(target.model, version=999))
    # server_core.cc GetModelVersionForLabel: an unknown label is INVALID_ARGUMENT.
    expect(
        Code.INVALID_ARGUMENT, grpc_client.predict, ModelRef(target.model, label="nope"), examples
    )


def test_invalid_inputs(
    grpc_client: PredictionClient, model: ModelRef, examples: list[bytes]
) -> None:
    error = expect(Code.INVALID_ARGUMENT, grpc_client.predict, model, examples, input_name="wrong")
    assert "wrong" in error.message
    error = expect(
        Code.INVALID_ARGUMENT,
        grpc_client.predict_tensors,
        model,
        {"examples": np.zeros(3, np.float32)},
    )
    assert "examples" in error.message.lower() or "string" in error.message.lower()
    error = expect(
        Code.INVALID_ARGUMENT,
        grpc_client.predict_tensors,
        model,
        {"examples": np.array([examples[:2], examples[2:4]], dtype=object)},
    )
    expect(Code.INVALID_ARGUMENT, grpc_client.predict, model, [b"\xff\xfe not a tf.Example"])


def test_unknown_signature_and_wrong_method(
    grpc_client: PredictionClient, target: Target, model: ModelRef, examples: list[bytes]
) -> None:
    # servables/tensorflow/predict_util.cc (RunPredict): an unknown key is FAILED_PRECONDITION.
    expect(Code.FAILED_PRECONDITION, grpc_client.predict, model, examples, signature="nope")
    # classifier.cc / regressor.cc: an unknown name or a signature of another kind is
    # INVALID_ARGUMENT (by method_name here, as with --enable_signature_method_name_check;
    # by inputs/outputs there by default, e.g. "Expected one output Tensor.").
    for call in (grpc_client.classify, grpc_client.regress):
        error = expect(Code.INVALID_ARGUMENT, call, model, examples, signature="nope")
        assert error.message == "No signature was found with the name: nope"
    error = expect(
        Code.INVALID_ARGUMENT, grpc_client.classify, model, examples, signature="serving_default"
    )
    if target.embedded:
        assert error.message == (
            "Expected classification signature method_name to be tensorflow/serving/classify. "
            "Was: tensorflow/serving/predict"
        )
    error = expect(
        Code.INVALID_ARGUMENT, grpc_client.regress, model, examples, signature="classify"
    )
    if target.embedded:
        assert error.message == (
            "Expected regression signature method_name to be tensorflow/serving/regress. "
            "Was: tensorflow/serving/classify"
        )


@pytest.mark.parametrize(
    "change,feature",
    [
        ({"fare": None}, "fare"),
        ({"trip_start_hour": 25}, "trip_start_hour"),
        ({"payment_type": "Bitcoin"}, "payment_type"),
        ({"fare": 3}, "fare"),
        ({"pickup_latitude": 12.5}, "pickup_latitude"),
        ({"trip_start_month": "May"}, "trip_start_month"),
    ],
)
def test_schema_violations_name_the_feature(
    grpc_client: PredictionClient,
    rest_client: RestClient,
    target: Target,
    model: ModelRef,
    examples: list[bytes],
    change: dict[str, object],
    feature: str,
) -> None:
    embedded_only(target, "TF Serving does not validate against the schema")
    for n in (1, 20):  # small batches are checked in Python, large ones in TensorFlow
        batch = list(examples) * 3
        batch = batch[:n]
        batch[-1] = mutate(batch[-1], **change)
        error = expect(Code.INVALID_ARGUMENT, grpc_client.predict, model, batch)
        assert feature in error.message and f"example {n - 1}" in error.message, error.message
        error = expect(Code.INVALID_ARGUMENT, grpc_client.classify, model, batch)
        assert feature in error.message
        error = expect(Code.INVALID_ARGUMENT, rest_client.predict, model, batch)
        assert feature in error.message


def test_large_batches_use_the_fused_call_and_still_name_the_problem(
    grpc_client: PredictionClient,
    target: Target,
    model: ModelRef,
    examples: list[bytes],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    embedded_only(target, "schema validation is this server's")
    assert target.server is not None
    with target.server.manager.lease(target.model, None, None) as servable:
        assert {"serving_default", "classify"} <= servable.fused_signatures
        assert "spin" not in servable.fused_signatures  # no serialized-examples input
    # Count the TF calls of the served version (the real call, only counted): every request,
    # good or bad, reaches the SavedModel exactly once.
    calls: list[str] = []
    invoke = type(servable)._invoke

    def counted(self, fn, key, inputs):  # type: ignore[no-untyped-def]
        calls.append(key)
        return invoke(self, fn, key, inputs)

    monkeypatch.setattr(type(servable), "_invoke", counted)
    batch = (list(examples) * 3)[:20]
    assert grpc_client.predict(model, batch).outputs["probabilities"].shape == (20, 1)
    assert calls == ["serving_default"]
    garbage = [*batch[:15], b"\xff\xfe not a tf.Example", *batch[16:]]
    error = expect(Code.INVALID_ARGUMENT, grpc_client.predict, model, garbage)
    assert calls == ["serving_default"] * 2
    assert "'examples'" in error.message and "example 15" in error.message, error.message
    assert "could not be parsed" in error.message
    two = tf.train.Example.FromString(batch[11])
    two.features.feature["trip_miles"].float_list.value.append(2.0)
    error = expect(
        Code.INVALID_ARGUMENT,
        grpc_client.predict,
        model,
        [*batch[:11], two.SerializeToString(), *batch[12:]],
    )
    assert "'examples'" in error.message and "example 11" in error.message, error.message
    assert "trip_miles" in error.message
    assert calls == ["serving_default"] * 3


def test_missing_optional_feature_is_fine(
    grpc_client: PredictionClient, model: ModelRef, examples: list[bytes]
) -> None:
    sparse = [
        mutate(e, company=None, pickup_latitude=None, dropoff_census_tract=None) for e in examples
    ]
    assert grpc_client.predict(model, sparse).outputs["probabilities"].shape == (len(sparse), 1)


def test_an_empty_value_list_is_a_missing_value(
    grpc_client: PredictionClient, model: ModelRef, examples: list[bytes]
) -> None:
    # CsvExampleGen (and so the pipeline's eval data) writes a missing cell as the feature with
    # an empty list; the model reads it as missing, so the server must answer, not fail.
    empty = []
    for serialized in examples:
        e = tf.train.Example.FromString(serialized)
        for name, kind in (("company", "bytes_list"), ("pickup_latitude", "float_list")):
            e.features.feature[name].Clear()
            getattr(e.features.feature[name], kind).SetInParent()
        empty.append(e.SerializeToString())
    assert grpc_client.predict(model, empty).outputs["probabilities"].shape == (len(empty), 1)


def test_resource_exhausted(
    grpc_client: PredictionClient,
    rest_client: RestClient,
    target: Target,
    model: ModelRef,
    examples: list[bytes],
) -> None:
    embedded_only(target, f"the size limit is set to {MAX_REQUEST_BYTES} bytes here")
    big = [b"x" * (MAX_REQUEST_BYTES + 1024)]
    expect(Code.RESOURCE_EXHAUSTED, grpc_client.predict, model, big)
    error = expect(Code.RESOURCE_EXHAUSTED, rest_client.predict, model, big)
    assert error.http_status == 429  # type: ignore[attr-defined]
    assert grpc_client.predict(model, examples).outputs  # still serving


def test_unavailable_until_a_version_loads(
    grpc_client: PredictionClient, rest_client: RestClient, target: Target, examples: list[bytes]
) -> None:
    embedded_only(target, "needs a configured model without versions")
    pending = ModelRef("pending")
    error = expect(Code.UNAVAILABLE, grpc_client.predict, pending, examples)
    assert "pending" in error.message
    error = expect(Code.UNAVAILABLE, rest_client.predict, pending, examples)
    assert error.http_status == 503  # type: ignore[attr-defined]


def test_bad_requests_do_not_disturb_good_ones(
    target: Target, model: ModelRef, examples: list[bytes]
) -> None:
    from serving.client import ClientSettings

    def call(i: int) -> str:
        with PredictionClient(
            ClientSettings(target=target.grpc, deadline_s=30.0, max_retries=0)
        ) as c:
            try:
                if i % 3 == 0:
                    c.predict(model, [b"garbage"])
                elif i % 3 == 1:
                    c.predict(model, examples, input_name="nope")
                else:
                    c.predict(model, examples)
                return "ok"
            except ServingError as e:
                return e.code.name

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(call, range(30)))
    assert results[2::3] == ["ok"] * 10
    assert set(results[0::3]) == {"INVALID_ARGUMENT"} and set(results[1::3]) == {"INVALID_ARGUMENT"}


# REST --------------------------------------------------------------------------------------------


def test_rest_status_routes(
    rest_client: RestClient, grpc_client: PredictionClient, target: Target
) -> None:
    status, body = rest_client.request("GET", f"/v1/models/{target.model}")
    assert status == 200
    versions = body["model_version_status"]
    assert versions and all(
        v["state"] == "AVAILABLE" and v["status"]["error_code"] == "OK" for v in versions
    )
    assert all(isinstance(v["version"], str) for v in versions)
    first = versions[0]["version"]
    status, body = rest_client.request("GET", f"/v1/models/{target.model}/versions/{first}")
    # The whole document, as TF Serving's REST API prints GetModelStatusResponse.
    assert status == 200 and body == {
        "model_version_status": [
            {
                "version": first,
                "state": "AVAILABLE",
                "status": {"error_code": "OK", "error_message": ""},
            }
        ]
    }
    # get_model_status_impl.cc reads no version label: a label gets every version.
    for label in target.labels:
        status, by_label = rest_client.request("GET", f"/v1/models/{target.model}/labels/{label}")
        assert status == 200 and by_label["model_version_status"] == versions
    status, body = rest_client.request("GET", "/v1/models/no_such_model")
    assert status == 404 and body["error"]


def test_rest_metadata(
    rest_client: RestClient, grpc_client: PredictionClient, target: Target, model: ModelRef
) -> None:
    status, body = rest_client.request("GET", f"/v1/models/{target.model}/metadata")
    assert status == 200
    assert set(body) == {"model_spec", "metadata"} and set(body["metadata"]) == {"signature_def"}
    assert body["model_spec"] == {
        "name": target.model,
        "signature_name": "",
        "version": str(latest_version(grpc_client, model)),
    }
    sigs = body["metadata"]["signature_def"]["signature_def"]
    assert sigs["classify"]["method_name"] == "tensorflow/serving/classify"
    assert sigs["serving_default"]["inputs"]["examples"]["dtype"] == "DT_STRING"
    for label, version in target.labels.items():
        status, body = rest_client.request(
            "GET", f"/v1/models/{target.model}/labels/{label}/metadata"
        )
        assert status == 200 and body["model_spec"]["version"] == str(version)


def test_rest_predict_row_and_columnar(
    rest_client: RestClient,
    grpc_client: PredictionClient,
    target: Target,
    model: ModelRef,
    examples: list[bytes],
) -> None:
    expected = grpc_client.predict(model, examples).outputs["probabilities"]
    b64 = [{"b64": base64.b64encode(e).decode()} for e in examples]
    status, body = rest_client.request(
        "POST", f"/v1/models/{target.model}:predict", {"instances": b64}
    )
    assert status == 200
    np.testing.assert_allclose(np.array(body["predictions"]), expected, rtol=1e-6)
    status, body = rest_client.request(
        "POST", f"/v1/models/{target.model}:predict", {"inputs": b64}
    )
    assert status == 200
    np.testing.assert_allclose(np.array(body["outputs"]), expected, rtol=1e-6)
    status, body = rest_client.request(
        "POST", f"/v1/models/{target.model}:predict", {"instances": [{"examples": x} for x in b64]}
    )
    assert status == 200
    np.testing.assert_allclose(np.array(body["predictions"]), expected, rtol=1e-6)
    # Several outputs: rows are objects, columns a dict; string outputs are plain text.
    status, body = rest_client.request(
        "POST",
        f"/v1/models/{target.model}:predict",
        {"signature_name": "classify", "instances": b64},
    )
    assert status == 200 and body["predictions"][0]["classes"] == ["0", "1"]
    np.testing.assert_allclose(
        [r["scores"][1] for r in body["predictions"]], expected[:, 0], rtol=1e-6
    )
    status, body = rest_client.request(
        "POST",
        f"/v1/models/{target.model}:predict",
        {"signature_name": "classify", "inputs": {"inputs": b64}},
    )
    assert status == 200 and set(body["outputs"]) == {"classes", "scores"}


def test_rest_predict_by_version_and_label(
    rest_client: RestClient, grpc_client: PredictionClient, target: Target, examples: list[bytes]
) -> None:
    if not target.labels:
        pytest.skip("SERVING_TEST_LABELS not set")
    for label, version in target.labels.items():
        expected = grpc_client.predict(ModelRef(target.model, version=version), examples).outputs[
            "probabilities"
        ]
        for ref in (ModelRef(target.model, label=label), ModelRef(target.model, version=version)):
            np.testing.assert_allclose(
                rest_client.predict(ref, examples).outputs["predictions"], expected, rtol=1e-6
            )


def test_rest_classify_and_regress(
    rest_client: RestClient, grpc_client: PredictionClient, model: ModelRef, examples: list[bytes]
) -> None:
    expected = grpc_client.classify(model, examples).classes
    got = rest_client.classify(model, examples).classes
    assert [[c for c, _ in row] for row in got] == [[c for c, _ in row] for row in expected]
    np.testing.assert_allclose(
        [[s for _, s in r] for r in got], [[s for _, s in r] for r in expected], rtol=1e-5
    )
    np.testing.assert_allclose(
        rest_client.regress(model, examples).values,
        grpc_client.regress(model, examples).values,
        rtol=1e-5,
    )
    # tensorflow_serving/util/json_tensor.cc (kClassifyRegressResponseKey) and
    # tensorflow_model_server_test.py (testClassifyREST, testRegressREST): the JSON answer is
    # {"results": ...}, [[label, score], ...] per example for classify, one number for regress.
    features = [example_to_json(tf.train.Example.FromString(e)) for e in examples]
    path = RestClient.model_path(model)
    status, body = rest_client.request(
        "POST", f"{path}:regress", {"signature_name": "regress", "examples": features}
    )
    assert status == 200 and set(body) == {"results"} and len(body["results"]) == len(examples)
    status, body = rest_client.request(
        "POST", f"{path}:classify", {"signature_name": "classify", "examples": features}
    )
    assert status == 200 and set(body) == {"results"}
    assert all(len(pair) == 2 for row in body["results"] for pair in row)


def test_rest_errors(rest_client: RestClient, target: Target, examples: list[bytes]) -> None:
    b64 = [{"b64": base64.b64encode(e).decode()} for e in examples[:1]]
    cases = [
        ("POST", "/v1/models/no_such_model:predict", {"instances": b64}, 404),
        ("POST", f"/v1/models/{target.model}/versions/999:predict", {"instances": b64}, 404),
        ("POST", f"/v1/models/{target.model}:predict", {"instancez": b64}, 400),
        ("POST", f"/v1/models/{target.model}:predict", {"instances": b64, "inputs": b64}, 400),
        ("POST", f"/v1/models/{target.model}:predict", {"instances": [{"wrong": b64[0]}]}, 400),
        ("POST", f"/v1/models/{target.model}:predict", {"instances": [1.5]}, 400),
        (
            "POST",
            f"/v1/models/{target.model}:predict",
            {"instances": [{"b64": "!!notbase64"}]},
            400,
        ),
        (
            "POST",
            f"/v1/models/{target.model}:classify",
            {"signature_name": "classify", "examples": "x"},
            400,
        ),
        # http_rest_api_handler.cc ProcessRequest: a /v1/ path no route matches is
        # "Malformed request" INVALID_ARGUMENT.
        ("POST", f"/v1/models/{target.model}:explode", {"instances": b64}, 400),
    ]
    for verb, path, body, code in cases:
        status, payload = rest_client.request(verb, path, body)
        assert status == code, (path, body, payload)
        assert isinstance(payload, dict) and payload["error"], payload
    rest_client.close()
    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(target.rest)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    conn.request(
        "POST",
        f"/v1/models/{target.model}:predict",
        body=b"{not json",
        headers={"Content-Type": "application/json"},
    )
    response = conn.getresponse()
    assert response.status == 400 and json.loads(response.read())["error"]
    conn.close()


def test_rest_schema_violation_and_json_examples(
    rest_client: RestClient, target: Target, examples: list[bytes]
) -> None:
    embedded_only(target, "schema validation is this server's")
    from serving.examples import example_to_json

    obj = example_to_json(tf.train.Example.FromString(examples[0]))
    obj["trip_start_hour"] = 30
    status, body = rest_client.request(
        "POST",
        f"/v1/models/{target.model}:classify",
        {"signature_name": "classify", "examples": [obj]},
    )
    assert status == 400 and "trip_start_hour" in body["error"]
    obj["trip_start_hour"] = 3
    obj["fare"] = 12  # an integer JSON number is an INT feature, as in TF Serving
    status, body = rest_client.request(
        "POST",
        f"/v1/models/{target.model}:regress",
        {"signature_name": "regress", "examples": [obj]},
    )
    assert status == 400 and "fare" in body["error"]


def test_rest_probes_and_metrics(
    rest_client: RestClient, target: Target, model: ModelRef, examples: list[bytes]
) -> None:
    embedded_only(target, "probe routes and metric names are this server's")
    assert target.server is not None
    registry = target.server.metrics.registry
    version = str(latest_version_rest(rest_client, model))
    labels = {"model": target.model, "version": version, "method": "Predict"}
    before = registry.get_sample_value("serving_examples_total", labels) or 0.0
    rest_client.predict(model, examples)
    assert rest_client.request("GET", "/v1/models/no_such_model")[0] == 404
    # TF Serving's example count: one per example answered.
    assert registry.get_sample_value("serving_examples_total", labels) == before + len(examples)
    assert rest_client.request("GET", "/healthz")[0] == 200
    assert rest_client.request("GET", "/readyz")[0] == 503  # "pending" has no version
    status, text = rest_client.request("GET", "/monitoring/prometheus/metrics")
    assert status == 200
    assert (
        'serving_requests_total{code="OK",method="Predict",model="chicago_taxi",protocol="rest"'
        in text
    )
    assert "serving_request_latency_seconds_bucket" in text
    assert 'serving_loaded_versions{model="chicago_taxi"} 2.0' in text
    assert 'code="NOT_FOUND"' in text
    assert "serving_warmup_requests_total" in text


def latest_version_rest(client: RestClient, model: ModelRef) -> int:
    return max(int(s["version"]) for s in client.model_status(model) if s["state"] == "AVAILABLE")


def test_tensor_conversions_roundtrip() -> None:
    for array in (
        np.arange(6, dtype=np.float32).reshape(2, 3),
        np.arange(4, dtype=np.int64),
        np.array([b"a", b"bc"], dtype=object),
        np.array(True),
    ):
        back = tensors.to_ndarray(tensors.to_tensor_proto(array))
        assert back.shape == array.shape
        assert back.tolist() == array.tolist()
    assert tensors.to_ndarray(tf.make_tensor_proto(np.float64(2.5))) == 2.5
