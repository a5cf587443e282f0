"""The Keras binary classifier over transformed taxi features."""

from collections.abc import Sequence
from typing import Any

import tensorflow as tf
import tf_keras as keras

from model import features


class Classifier(keras.Model):
    """A functional Keras model whose train/test/predict steps are traced without AutoGraph.

    TF's AutoGraph skips the `keras` package but not `tf_keras` (the Keras 2 that TFT's
    transform layer needs), so it re-writes tf_keras' training code on every first call:
    13-20 s per traced function here against about 1 s without it. Keras' steps are
    graph-safe as written, so they need no conversion.
    """

    @tf.autograph.experimental.do_not_convert
    def train_step(self, data: Any) -> Any:
        """Keras' train step, unconverted."""
        return super().train_step(data)

    @tf.autograph.experimental.do_not_convert
    def test_step(self, data: Any) -> Any:
        """Keras' test step, unconverted."""
        return super().test_step(data)

    @tf.autograph.experimental.do_not_convert
    def predict_step(self, data: Any) -> Any:
        """Keras' predict step, unconverted."""
        return super().predict_step(data)


def categorical_width(spec: features.FeatureSpec, key: str) -> int:
    """One-hot width of a transformed categorical feature.

    Args:
      spec: Feature roles from the schema.
      key: Raw feature name with role bucketize, vocab or categorical_int.

    Returns:
      Number of distinct transformed values.
    """
    if key in spec.by_role["bucketize"]:
        return features.BUCKET_COUNT
    if key in spec.by_role["vocab"]:
        return features.VOCAB_SIZE + features.OOV_SIZE
    return spec.categorical_max[key] + 1


def build_model(
    spec: features.FeatureSpec,
    hidden_units: Sequence[int] = (64,),
    learning_rate: float = 1e-3,
    steps_per_execution: int = 1,
) -> keras.Model:
    """Builds and compiles the classifier: one-hot/z-scored inputs -> Dense(relu)* -> sigmoid.

    Args:
      spec: Feature roles from the schema (decides the inputs and one-hot widths).
      hidden_units: Width of each hidden ReLU layer.
      learning_rate: Adam learning rate.
      steps_per_execution: Batches per compiled-graph call (see Hyperparameters).

    Returns:
      A compiled model taking a dict of rank-1 transformed features and returning P(label=1)
      with shape [batch, 1].
    """
    inputs: dict[str, keras.Input] = {}
    encoded = []
    for key in spec.by_role["zscore"]:
        name = features.transformed_name(key)
        inputs[name] = keras.Input(shape=(), name=name, dtype="float32")
        encoded.append(keras.layers.Reshape((1,))(inputs[name]))
    for role in ("bucketize", "vocab", "categorical_int"):
        for key in spec.by_role[role]:
            name = features.transformed_name(key)
            inputs[name] = keras.Input(shape=(), name=name, dtype="int64")
            encoded.append(
                keras.layers.CategoryEncoding(
                    num_tokens=categorical_width(spec, key), output_mode="one_hot"
                )(inputs[name])
            )
    x = keras.layers.concatenate(encoded)
    for units in hidden_units:
        x = keras.layers.Dense(units, activation="relu")(x)
    output = keras.layers.Dense(1, activation="sigmoid")(x)
    model = Classifier(inputs=inputs, outputs=output)
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=learning_rate),
        loss="binary_crossentropy",
        metrics=[keras.metrics.AUC(name="auc"), keras.metrics.BinaryAccuracy(name="accuracy")],
        steps_per_execution=steps_per_execution,
    )
    return model
