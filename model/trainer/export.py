"""Exports the trained model with TF Serving signatures, embedding the transform graph."""

import os
from typing import Any

import tensorflow as tf
import tensorflow_transform as tft
import tf_keras as keras
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow_metadata.proto.v0 import schema_pb2
from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

import model_contract
from model import features


def _serving_feature_spec(tf_transform_output: tft.TFTransformOutput) -> dict[str, Any]:
    spec = dict(tf_transform_output.raw_feature_spec())
    # The label source is absent at serving (SERVING environment of the schema).
    spec.pop(features.taxi_features().label_source, None)
    return spec


def build_signatures(model: keras.Model, tf_transform_output: tft.TFTransformOutput) -> dict:
    """Builds the serving signatures of docs/model-contract.md.

    Args:
      model: The trained model over transformed features.
      tf_transform_output: Output of the Transform component (its graph is embedded).

    Returns:
      Signature name -> concrete function, for `tf.saved_model.save`.
    """
    # Tracked on the model so the transform graph and its assets are saved with it.
    model.tft_layer = tf_transform_output.transform_features_layer()
    serving_spec = _serving_feature_spec(tf_transform_output)
    raw_spec = tf_transform_output.raw_feature_spec()
    serialized = tf.TensorSpec(shape=[None], dtype=tf.string)

    # Traced once and shared by the three client-facing signatures (tracing the transform
    # layer is the slow part of exporting). No AutoGraph: these functions have no Python
    # control flow on tensors, and converting tf_keras' call paths costs seconds per trace.
    @tf.function(input_signature=[serialized], autograph=False)
    def probabilities(examples: tf.Tensor) -> tf.Tensor:
        parsed = tf.io.parse_example(examples, serving_spec)
        transformed = model.tft_layer(parsed)
        inputs = {name: transformed[name] for name in model.input_names}
        return model(inputs)

    @tf.function(input_signature=[serialized], autograph=False)
    def serve_examples(examples: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"probabilities": probabilities(examples)}

    @tf.function(input_signature=[serialized], autograph=False)
    def classify(inputs: tf.Tensor) -> dict[str, tf.Tensor]:
        p = probabilities(inputs)
        scores = tf.concat([1.0 - p, p], axis=1)
        classes = tf.tile(tf.constant([["0", "1"]]), [tf.shape(p)[0], 1])
        return {"classes": classes, "scores": scores}

    @tf.function(input_signature=[serialized], autograph=False)
    def regress(inputs: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"outputs": tf.squeeze(probabilities(inputs), axis=1)}

    @tf.function(input_signature=[serialized], autograph=False)
    def transform_features(examples: tf.Tensor) -> dict[str, tf.Tensor]:
        return model.tft_layer(tf.io.parse_example(examples, raw_spec))

    return {
        "serving_default": serve_examples.get_concrete_function(),
        "classify": classify.get_concrete_function(),
        "regress": regress.get_concrete_function(),
        "transform_features": transform_features.get_concrete_function(),
    }


def warmup_examples(schema: schema_pb2.Schema, count: int = 3) -> list[bytes]:
    """Builds schema-valid serialized tf.Examples for warm-up (SERVING features only).

    Required features get an in-domain value; optional ones are left missing in the first
    example so warm-up also exercises the missing-value path.

    Args:
      schema: The curated schema.
      count: Number of examples.

    Returns:
      Serialized tf.Example protos.
    """
    domains = {d.name: list(d.value) for d in schema.string_domain}
    result = []
    for i in range(count):
        example = tf.train.Example()
        for feature in schema.feature:
            if "SERVING" in feature.not_in_environment:
                continue
            required = feature.presence.min_fraction >= 1.0
            if not required and i == 0:
                continue
            target = example.features.feature[feature.name]
            if feature.type == schema_pb2.BYTES:
                values = domains.get(feature.domain) or ["warmup"]
                target.bytes_list.value.append(values[i % len(values)].encode())
            elif feature.type == schema_pb2.INT:
                ints = feature.int_domain
                number = (int(ints.min) if feature.HasField("int_domain") else 0) + i
                if feature.HasField("int_domain") and ints.HasField("max"):
                    number = min(number, int(ints.max))
                target.int64_list.value.append(number)
            else:
                floats = feature.float_domain
                low = float(floats.min) if feature.HasField("float_domain") else 0.0
                if feature.HasField("float_domain") and floats.HasField("max"):
                    # Spread inside [min, max]: a warm-up request outside the schema's domain
                    # would be refused by a server that validates inputs.
                    real = low + (floats.max - low) * (i + 1) / (count + 1)
                else:
                    real = low + 1.5 * (i + 1)
                target.float_list.value.append(real)
        result.append(example.SerializeToString())
    return result


def write_warmup_requests(export_dir: str, examples: list[bytes]) -> str:
    """Writes TF Serving warm-up requests (Predict on serving_default) into assets.extra.

    Args:
      export_dir: SavedModel directory.
      examples: Serialized tf.Examples to replay.

    Returns:
      Path of the written TFRecord file.
    """
    path = os.path.join(export_dir, model_contract.WARMUP_FILE)
    tf.io.gfile.makedirs(os.path.dirname(path))
    request = predict_pb2.PredictRequest(
        model_spec=model_pb2.ModelSpec(signature_name="serving_default")
    )
    request.inputs["examples"].CopyFrom(tf.make_tensor_proto(examples, dtype=tf.string))
    log = prediction_log_pb2.PredictionLog(
        predict_log=prediction_log_pb2.PredictLog(request=request)
    )
    with tf.io.TFRecordWriter(path) as writer:
        writer.write(log.SerializeToString())
    return path


def export_model(
    model: keras.Model,
    tf_transform_output: tft.TFTransformOutput,
    export_dir: str,
    schema: schema_pb2.Schema,
) -> None:
    """Saves the model with its signatures, method names and warm-up requests.

    Args:
      model: The trained model.
      tf_transform_output: Transform output to embed.
      export_dir: Destination (the Trainer's serving model dir).
      schema: The curated raw-data schema (for warm-up examples).
    """
    signatures = build_signatures(model, tf_transform_output)
    tf.saved_model.save(model, export_dir, signatures=signatures)
    # TF2's saver writes the predict method for every signature; Classify/Regress need theirs.
    model_contract.set_method_names(tf.io.gfile, export_dir, saved_model_pb2.SavedModel())
    write_warmup_requests(export_dir, warmup_examples(schema))
