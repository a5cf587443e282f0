"""tf.Transform preprocessing for the taxi model, driven by the schema's feature roles.

Referenced by dotted path (`model.preprocessing.preprocessing_fn`), never by module_file.
"""

from typing import Any

import tensorflow as tf
import tensorflow_transform as tft

from model import features


def _dense(x: Any, default: Any) -> tf.Tensor:
    """Densifies a (possibly sparse, possibly missing) single-value feature to shape [batch]."""
    if isinstance(x, tf.sparse.SparseTensor):
        x = tf.sparse.to_dense(
            tf.SparseTensor(x.indices, x.values, [x.dense_shape[0], 1]), default_value=default
        )
    return tf.squeeze(x, axis=1)


def _default_for(x: Any) -> Any:
    dtype = x.dtype
    if dtype == tf.string:
        return ""
    return tf.constant(0, dtype=dtype)


def preprocessing_fn(inputs: dict[str, Any]) -> dict[str, tf.Tensor]:
    """Maps raw taxi features to model features and the label.

    Missing optional values become the type's zero / empty string before any analyzer; the
    vocabulary treats "" as its own token, so "missing" stays distinguishable for strings.

    Args:
      inputs: Raw features parsed with the curated schema (sparse for single optional values).

    Returns:
      Transformed features named `<feature>_xf`, plus the label `big_tipper` (int64 0/1) when
      the label source column is present (training/evaluation only: absent at serving).
    """
    spec = features.taxi_features()
    outputs: dict[str, tf.Tensor] = {}
    for key in spec.by_role["zscore"]:
        value = tf.cast(_dense(inputs[key], _default_for(inputs[key])), tf.float32)
        outputs[features.transformed_name(key)] = tft.scale_to_z_score(value)
    for key in spec.by_role["bucketize"]:
        value = tf.cast(_dense(inputs[key], _default_for(inputs[key])), tf.float32)
        outputs[features.transformed_name(key)] = tft.bucketize(value, features.BUCKET_COUNT)
    for key in spec.by_role["vocab"]:
        value = _dense(inputs[key], _default_for(inputs[key]))
        outputs[features.transformed_name(key)] = tft.compute_and_apply_vocabulary(
            value,
            top_k=features.VOCAB_SIZE,
            num_oov_buckets=features.OOV_SIZE,
            vocab_filename=key,
        )
    for key in spec.by_role["categorical_int"]:
        value = _dense(inputs[key], _default_for(inputs[key]))
        # Out-of-domain values are clipped so the model's one-hot width is fixed by the schema.
        outputs[features.transformed_name(key)] = tf.clip_by_value(
            tf.cast(value, tf.int64), 0, spec.categorical_max[key]
        )
    if spec.label_source in inputs:
        tips = tf.cast(
            _dense(inputs[spec.label_source], _default_for(inputs[spec.label_source])), tf.float32
        )
        fare = tf.cast(
            _dense(inputs[features.FARE_KEY], _default_for(inputs[features.FARE_KEY])), tf.float32
        )
        outputs[features.LABEL_KEY] = tf.cast(tips > features.TIP_FRACTION * fare, tf.int64)
    return outputs
