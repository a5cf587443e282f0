"""Builds small real SavedModels that honour docs/model-contract.md (tests, bench, demos)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence

import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

from model_contract import STAGING_PREFIX, WARMUP_FILE, set_method_names
from serving import tensors
from serving.examples import ExampleBuilder
from serving.schema import BYTES, FLOAT, INT, FeatureSpec


def _parse_spec(features: Sequence[FeatureSpec]) -> dict[str, tf.io.VarLenFeature]:
    dtypes = {INT: tf.int64, FLOAT: tf.float32, BYTES: tf.string}
    return {f.name: tf.io.VarLenFeature(dtypes[f.kind]) for f in features}


class _ContractModel(tf.Module):
    """A deterministic model over the SERVING features: numeric features and one-hot strings."""

    def __init__(
        self, features: Sequence[FeatureSpec], seed: int, bias: float, hidden: int
    ) -> None:
        super().__init__()
        self._features = tuple(features)
        self._spec = _parse_spec(features)
        rng = np.random.default_rng(seed)
        width = 0
        for f in self._features:
            width += len(f.allowed) if f.allowed is not None else (8 if f.kind == BYTES else 1)
        self._width = width
        self.w1 = tf.Variable(rng.normal(0, 0.3, (width, hidden)).astype(np.float32))
        self.b1 = tf.Variable(rng.normal(0, 0.1, (hidden,)).astype(np.float32))
        self.w2 = tf.Variable(rng.normal(0, 0.3, (hidden, 1)).astype(np.float32))
        self.b2 = tf.Variable(np.array([bias], dtype=np.float32))

    def _encode(self, serialized: tf.Tensor) -> tf.Tensor:
        parsed = tf.io.parse_example(serialized, self._spec)
        columns = []
        for f in self._features:
            sparse = parsed[f.name]
            if f.kind == BYTES:
                dense = tf.sparse.to_dense(sparse, default_value="")[:, :1]
                dense = tf.pad(dense, [[0, 0], [0, 1 - tf.shape(dense)[1]]], constant_values="")
                if f.allowed is not None:
                    vocab = tf.constant(sorted(f.allowed))
                    columns.append(tf.cast(tf.equal(dense, vocab[None, :]), tf.float32))
                else:
                    bucket = tf.strings.to_hash_bucket_fast(dense[:, 0], 8)
                    present = tf.cast(tf.not_equal(dense[:, 0], ""), tf.float32)
                    columns.append(tf.one_hot(bucket, 8) * present[:, None])
            else:
                dense = tf.sparse.to_dense(sparse)[:, :1]
                dense = tf.pad(dense, [[0, 0], [0, 1 - tf.shape(dense)[1]]])
                x = tf.cast(dense, tf.float32)
                columns.append(tf.sign(x) * tf.math.log1p(tf.abs(x)) / 10.0)
        return tf.concat(columns, axis=1)

    def _probability(self, serialized: tf.Tensor) -> tf.Tensor:
        x = self._encode(serialized)
        hidden = tf.nn.relu(tf.matmul(x, self.w1) + self.b1)
        return tf.sigmoid(tf.matmul(hidden, self.w2) + self.b2)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def serve(self, examples: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"probabilities": self._probability(examples)}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
    def classify(self, inputs: tf.Tensor) -> dict[str, tf.Tensor]:
        p = self._probability(inputs)
        scores = tf.concat([1.0 - p, p], axis=1)
        classes = tf.tile(tf.constant([["0", "1"]]), [tf.shape(p)[0], 1])
        return {"classes": classes, "scores": scores}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
    def regress(self, inputs: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"outputs": self._probability(inputs)[:, 0]}

    @tf.function(input_signature=[tf.TensorSpec([], tf.int64, name="iterations")])
    def spin(self, iterations: tf.Tensor) -> dict[str, tf.Tensor]:
        """Busy work proportional to `iterations` (tests of draining and concurrency)."""
        m = tf.eye(64) * 0.5

        def body(i: tf.Tensor, acc: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            return i + 1, tf.matmul(acc, m) + tf.eye(64)

        _, acc = tf.while_loop(lambda i, _: i < iterations, body, [tf.constant(0, tf.int64), m])
        return {"result": tf.reduce_sum(acc)}


def write_warmup(export_dir: str, model_name: str, examples: Sequence[bytes]) -> str:
    """Writes `assets.extra/tf_serving_warmup_requests` with one Predict on serving_default.

    Args:
      export_dir: SavedModel directory.
      model_name: Model name recorded in the request.
      examples: Serialized tf.Examples to send.

    Returns:
      The warm-up file path.
    """
    path = os.path.join(export_dir, WARMUP_FILE)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model_name
    request.model_spec.signature_name = "serving_default"
    request.inputs["examples"].CopyFrom(tensors.string_tensor(list(examples)))
    log = prediction_log_pb2.PredictionLog(
        predict_log=prediction_log_pb2.PredictLog(request=request)
    )
    with tf.io.TFRecordWriter(path) as writer:
        writer.write(log.SerializeToString())
    return path


def sample_rows() -> list[dict[str, object]]:
    """Returns a few valid raw taxi rows (SERVING features; optional ones sometimes missing)."""
    base: dict[str, object] = {
        "pickup_community_area": 8,
        "fare": 9.25,
        "trip_start_month": 5,
        "trip_start_hour": 14,
        "trip_start_day": 3,
        "trip_start_timestamp": 1400000000,
        "pickup_latitude": 41.89,
        "pickup_longitude": -87.63,
        "dropoff_latitude": 41.92,
        "dropoff_longitude": -87.65,
        "trip_miles": 2.1,
        "pickup_census_tract": None,
        "dropoff_census_tract": 17031081500,
        "payment_type": "Credit Card",
        "company": "Taxi Affiliation Services",
        "trip_seconds": 540,
        "dropoff_community_area": 7,
    }
    rows = []
    for i in range(8):
        row = dict(base)
        row["fare"] = 5.0 + 3.5 * i
        row["trip_miles"] = 0.5 + 1.25 * i
        row["trip_start_hour"] = (3 * i) % 24
        row["payment_type"] = ["Credit Card", "Cash", "Mobile", "Unknown"][i % 4]
        if i % 3 == 1:
            row["company"] = None
            row["dropoff_census_tract"] = None
        if i % 4 == 2:
            row["pickup_latitude"] = row["pickup_longitude"] = None
        rows.append(row)
    return rows


def build_model(
    export_dir: str,
    features: Sequence[FeatureSpec],
    *,
    seed: int = 0,
    bias: float = 0.0,
    hidden: int = 16,
    model_name: str = "chicago_taxi",
    warmup_rows: Sequence[Mapping[str, object]] | None = None,
    with_spin: bool = False,
) -> str:
    """Exports a contract SavedModel atomically (temp dir, then rename) into `export_dir`.

    Args:
      export_dir: Final version directory, e.g. `<base>/<model>/<version>`; must not exist.
      features: SERVING features the model parses.
      seed: Weight seed.
      bias: Output logit bias, to tell versions apart.
      hidden: Hidden layer width.
      model_name: Name recorded in warm-up requests.
      warmup_rows: Rows for the warm-up file (default: `sample_rows()[:3]`); [] for none.
      with_spin: Also export a `spin` signature (busy work, tests only).

    Returns:
      `export_dir`.
    """
    module = _ContractModel(features, seed, bias, hidden)
    signatures = {
        "serving_default": module.serve.get_concrete_function(),
        "classify": module.classify.get_concrete_function(),
        "regress": module.regress.get_concrete_function(),
    }
    if with_spin:
        signatures["spin"] = module.spin.get_concrete_function()
    parent = os.path.dirname(os.path.abspath(export_dir))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=parent)
    try:
        tf.saved_model.save(module, tmp, signatures=signatures)
        set_method_names(tf.io.gfile, tmp, saved_model_pb2.SavedModel())
        rows = sample_rows()[:3] if warmup_rows is None else list(warmup_rows)
        if rows:
            builder = ExampleBuilder(features)
            write_warmup(tmp, model_name, [e.SerializeToString() for e in builder.build_all(rows)])
        os.rename(tmp, export_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return export_dir
