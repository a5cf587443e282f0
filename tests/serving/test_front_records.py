"""PredictionLogs from proxied bytes: gRPC messages and TF Serving's REST JSON layouts."""

from __future__ import annotations

import json

import pytest
import tensorflow as tf
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import predict_pb2, regression_pb2

from operations import monitor
from serving import tensors
from serving.front import records


def example(fare: float) -> bytes:
    e = tf.train.Example()
    e.features.feature["fare"].float_list.value.append(fare)
    return e.SerializeToString()


def test_grpc_messages_are_logged_with_the_answering_version() -> None:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "chicago_taxi"
    request.inputs["examples"].CopyFrom(tensors.string_tensor([example(1.5), example(2.5)]))
    response = predict_pb2.PredictResponse()
    response.model_spec.name = "chicago_taxi"
    response.model_spec.version.value = 7
    response.outputs["probabilities"].CopyFrom(tf.make_tensor_proto([[0.1], [0.9]]))
    log = records.from_grpc(
        records.PREDICT, request.SerializeToString(), response.SerializeToString(), 0.01
    )
    assert log.log_metadata.model_spec.version.value == 7
    assert log.log_metadata.sampling_config.sampling_rate == 0.01
    assert log.predict_log.request == request and log.predict_log.response == response
    assert monitor.examples_of(log) == [example(1.5), example(2.5)]

    regress = regression_pb2.RegressionRequest()
    regress.model_spec.name = "m"
    regress.input.example_list.examples.add().ParseFromString(example(3.0))
    log = records.from_grpc(records.REGRESS, regress.SerializeToString(), b"", 1.0)
    assert log.log_metadata.model_spec.name == "m"  # the request's spec when the answer has none
    assert monitor.examples_of(log) == [example(3.0)]
    with pytest.raises(records.RecordError, match="GetModelMetadata is not logged"):
        records.from_grpc("/tensorflow.serving.PredictionService/GetModelMetadata", b"", b"", 1)


SIGNATURE = records.Signature(
    inputs={"examples": types_pb2.DT_STRING},
    outputs={"probabilities": types_pb2.DT_FLOAT},
)


@pytest.mark.parametrize(
    ("request_body", "response_body"),
    [
        # Row format, bare values (TFX's taxi client), as the one input and output.
        (
            {"instances": [records.b64(example(1.0)), records.b64(example(2.0))]},
            {"predictions": [[0.2], [0.8]]},
        ),
        # Row format, named.
        (
            {
                "instances": [
                    {"examples": records.b64(example(1.0))},
                    {"examples": records.b64(example(2.0))},
                ]
            },
            {"predictions": [{"probabilities": [0.2]}, {"probabilities": [0.8]}]},
        ),
        # Columnar, named and bare.
        (
            {"inputs": {"examples": [records.b64(example(1.0)), records.b64(example(2.0))]}},
            {"outputs": [[0.2], [0.8]]},
        ),
    ],
)
def test_every_rest_predict_layout_gives_the_same_tensors(
    request_body: dict[str, object], response_body: dict[str, object]
) -> None:
    log = records.from_rest(
        "chicago_taxi",
        3,
        "serving_default",
        "predict",
        json.dumps(request_body).encode(),
        json.dumps(response_body).encode(),
        0.5,
        SIGNATURE,
    )
    assert log.log_metadata.model_spec.version.value == 3
    assert monitor.examples_of(log) == [example(1.0), example(2.0)]
    probabilities = tf.make_ndarray(log.predict_log.response.outputs["probabilities"])
    assert probabilities.dtype == "float32" and probabilities.shape == (2, 1)


def test_rest_classify_and_regress_bodies_are_told_apart_and_logged() -> None:
    request = json.dumps({"context": {"company": "Taxi"}, "examples": [{"fare": 4.5}]}).encode()
    classify = json.dumps({"results": [[["0", 0.3], ["1", 0.7]]]}).encode()
    regress = json.dumps({"results": [0.25]}).encode()
    assert records.verb_of_bodies(request, classify) == "classify"
    assert records.verb_of_bodies(request, regress) == "regress"
    assert records.verb_of_bodies(b'{"instances": [1]}', b'{"predictions": [1]}') == "predict"
    log = records.from_rest("m", None, "classify", "classify", request, classify, 1.0)
    with_context = log.classify_log.request.input.example_list_with_context
    assert with_context.context.features.feature["company"].bytes_list.value == [b"Taxi"]
    assert [c.score for c in log.classify_log.response.result.classifications[0].classes] == [
        pytest.approx(0.3),
        pytest.approx(0.7),
    ]
    log = records.from_rest("m", None, "regress", "regress", request, regress, 1.0)
    assert log.regress_log.response.result.regressions[0].value == pytest.approx(0.25)
    assert not log.log_metadata.model_spec.HasField("version")


@pytest.mark.parametrize(
    ("request_body", "response_body", "message"),
    [
        (b"not json", b"{}", "request is not JSON"),
        (b"[1]", b"{}", "request is not a JSON object"),
        (b'{"instances": [1]}', b'{"error": "x"}', "neither 'predictions' nor 'outputs'"),
        (b'{"signature_name": 3, "instances": [1]}', b'{"predictions": [1]}', "signature_name"),
    ],
)
def test_bodies_tf_serving_would_not_answer_are_errors_naming_why(
    request_body: bytes, response_body: bytes, message: str
) -> None:
    with pytest.raises(records.RecordError, match=message):
        records.from_rest("m", None, "serving_default", "predict", request_body, response_body, 1)
