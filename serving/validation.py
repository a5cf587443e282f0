"""Serving-side validation of serialized tf.Examples against the curated schema."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import numpy as np
import tensorflow as tf
from google.protobuf.message import DecodeError

from serving.errors import InvalidArgumentError
from serving.schema import BYTES, FLOAT, INT, FeatureSpec

logger = logging.getLogger(__name__)

_LIST_OF_KIND = {INT: "int64_list", FLOAT: "float_list", BYTES: "bytes_list"}
_TF_DTYPE = {INT: tf.int64, FLOAT: tf.float32, BYTES: tf.string}


class ExampleValidator:
    """Checks serialized tf.Examples against the schema's features, before the model runs.

    Small batches are checked in Python (cheaper than a TensorFlow call); larger ones by a
    compiled TensorFlow function that only detects violations, after which the Python check
    names the first one. Both apply the same rules: each feature must use the list type of
    its schema type, carry the allowed number of values, stay inside its domain, and be
    present when required. Features outside the schema are ignored.
    """

    def __init__(self, features: Sequence[FeatureSpec], python_max_batch: int = 8) -> None:
        """Creates a validator.

        Args:
          features: The SERVING environment's features.
          python_max_batch: Batches up to this size are checked in Python only.
        """
        self._features = tuple(features)
        self._python_max_batch = python_max_batch
        self._detector = _build_detector(self._features) if self._features else None

    @property
    def python_max_batch(self) -> int:
        """Batches up to this size are checked in Python only (cheaper than the detector)."""
        return self._python_max_batch

    @property
    def features(self) -> tuple[FeatureSpec, ...]:
        """The features checked."""
        return self._features

    @property
    def detector(self) -> tf.types.experimental.ConcreteFunction | None:
        """The compiled detector: rank-1 string examples -> one bool per feature (None: none).

        The model server fuses it into the signature call, so that large batches are checked
        and served in a single TensorFlow call; `explain` then turns its flags into the error.
        """
        return self._detector

    def check(self, serialized: np.ndarray, input_name: str) -> None:
        """Validates a batch of serialized examples.

        Args:
          serialized: Array of serialized tf.Example bytes (any shape).
          input_name: Signature input the batch was sent as, for messages.

        Raises:
          InvalidArgumentError: Naming the input, example index and feature of the first violation.
        """
        flat = serialized.ravel()
        if len(flat) <= self._python_max_batch or self._detector is None:
            self._explain(flat, input_name)
            return
        try:
            flags = self._detector(tf.constant(flat, dtype=tf.string)).numpy()
        except (tf.errors.InvalidArgumentError, UnicodeDecodeError):
            # TF reports bad bytes in its message, which may not decode: the Python check names it.
            flags = None  # unparseable or wrongly typed: let the Python check name it
        self.explain(flat, input_name, flags)

    def explain(self, serialized: np.ndarray, input_name: str, flags: np.ndarray | None) -> None:
        """Turns the detector's flags into the error naming the first violation.

        Args:
          serialized: The batch the detector ran on (any shape).
          input_name: Signature input the batch was sent as, for messages.
          flags: The detector's output, or None when it failed (unparseable input).

        Raises:
          InvalidArgumentError: Naming the input, example index and feature of the first violation.
        """
        if flags is not None and not flags.any():
            return
        self._explain(serialized.ravel(), input_name)
        if flags is not None:
            bad = [f.name for f, flag in zip(self._features, flags, strict=True) if flag]
            raise InvalidArgumentError(f"Input {input_name!r}: feature(s) {bad} violate the schema")

    def _explain(self, flat: np.ndarray, input_name: str) -> None:
        for index, raw in enumerate(flat):
            if not isinstance(raw, bytes):
                raise InvalidArgumentError(f"Input {input_name!r}: example {index} is not bytes")
            try:
                example = tf.train.Example.FromString(raw)
            except DecodeError:
                raise InvalidArgumentError(
                    f"Input {input_name!r}: example {index} could not be parsed as a "
                    "serialized tf.Example"
                ) from None
            problem = _example_problem(example, self._features)
            if problem:
                raise InvalidArgumentError(f"Input {input_name!r}: example {index}: {problem}")


def _example_problem(example: tf.train.Example, features: Sequence[FeatureSpec]) -> str | None:
    fmap = example.features.feature
    for spec in features:
        feature = fmap.get(spec.name)
        kind = feature.WhichOneof("kind") if feature is not None else None
        values: Sequence[object] = getattr(feature, kind).value if kind else ()
        if not values:
            if spec.required:
                return f"feature {spec.name!r} is required but missing"
            continue
        expected = _LIST_OF_KIND[spec.kind]
        if kind != expected:
            return f"feature {spec.name!r} must be {spec.kind.upper()} ({expected}), got {kind}"
        if len(values) < spec.min_values or (
            spec.max_values is not None and len(values) > spec.max_values
        ):
            high = "inf" if spec.max_values is None else spec.max_values
            return (
                f"feature {spec.name!r} has {len(values)} values, expected "
                f"[{spec.min_values}, {high}]"
            )
        if spec.allowed is not None:
            for v in values:
                text = v.decode("utf-8", errors="replace") if isinstance(v, bytes) else str(v)
                if text not in spec.allowed:
                    return f"feature {spec.name!r} value {text!r} is not {spec.describe_domain()}"
        elif spec.checks_nan or spec.disallow_inf:
            for v in values:
                number = float(v)  # type: ignore[arg-type,unused-ignore]
                if (
                    (math.isnan(number) and spec.checks_nan)
                    or (math.isinf(number) and spec.disallow_inf)
                    or (spec.minimum is not None and number < spec.minimum)
                    or (spec.maximum is not None and number > spec.maximum)
                ):
                    return f"feature {spec.name!r} value {v!r} is not {spec.describe_domain()}"
    return None


_INT_MISSING = int(np.iinfo(np.int64).min)
_FLOAT_MISSING = float(np.finfo(np.float32).min)
_BYTES_MISSING = b"\x00<missing>"
_SENTINEL: dict[str, int | float | bytes] = {
    INT: _INT_MISSING,
    FLOAT: _FLOAT_MISSING,
    BYTES: _BYTES_MISSING,
}


def _build_detector(features: Sequence[FeatureSpec]) -> tf.types.experimental.ConcreteFunction:
    """Compiles a violation detector: one bool per feature, True when any example violates it.

    Single-valued features (value_count max 1, the usual case) are parsed as ragged rows,
    padded to one value with a sentinel for "missing", and checked in a few vectorized ops per
    type; other features are parsed as variable-length lists. Ragged rather than fixed-length
    parsing: a feature present with an empty list (how CsvExampleGen writes a missing value) is
    missing to the model's own parser, but an error to a fixed-length one.
    """
    single = [f for f in features if f.max_values == 1]
    multi = [f for f in features if f.max_values != 1]
    spec: dict[str, tf.io.RaggedFeature | tf.io.VarLenFeature] = {
        f.name: tf.io.RaggedFeature(_TF_DTYPE[f.kind], row_splits_dtype=tf.int64) for f in single
    }
    spec.update({f.name: tf.io.VarLenFeature(_TF_DTYPE[f.kind]) for f in multi})
    # Ints, then floats: each group is stacked and cast once.
    numeric = [f for f in single if f.kind == INT] + [f for f in single if f.kind == FLOAT]
    strings = [f for f in single if f.kind == BYTES]
    # The flags are computed as [numeric..., strings..., multi...] and gathered once into
    # feature order (fewer ops per call than slicing and re-stacking each feature's flag).
    computed = [f.name for f in numeric + strings + multi]
    order = [computed.index(f.name) for f in features]
    inf = float("inf")

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def detect(serialized: tf.Tensor) -> tf.Tensor:
        parsed = tf.io.parse_example(serialized, spec)
        # Single-valued features: more than one value is a violation; then one value per row.
        too_many = {f.name: parsed[f.name].row_lengths() > 1 for f in single}
        for f in single:
            parsed[f.name] = parsed[f.name].to_tensor(
                default_value=_SENTINEL[f.kind], shape=[None, 1]
            )[:, 0]
        vectors: list[tf.Tensor] = []
        scalars: list[tf.Tensor] = []
        if numeric:
            # Int64 values are compared as float64: exact for every bound below 2**53.
            groups = [
                tf.cast(tf.stack([parsed[f.name] for f in group], axis=1), tf.float64)
                for group in ([f for f in numeric if f.kind == k] for k in (INT, FLOAT))
                if group
            ]
            matrix = groups[0] if len(groups) == 1 else tf.concat(groups, axis=1)
            missing_value = tf.constant(
                [float(_INT_MISSING if f.kind == INT else _FLOAT_MISSING) for f in numeric],
                dtype=tf.float64,
            )
            missing = tf.equal(matrix, missing_value[None, :])
            low = tf.constant(
                [-inf if f.minimum is None else f.minimum for f in numeric], tf.float64
            )
            high = tf.constant(
                [inf if f.maximum is None else f.maximum for f in numeric], tf.float64
            )
            checks_nan = tf.constant([f.checks_nan for f in numeric])
            checks_inf = tf.constant([f.disallow_inf for f in numeric])
            required = tf.constant([f.required for f in numeric])
            outside = (
                tf.logical_or(matrix < low[None, :], matrix > high[None, :])
                | tf.logical_and(tf.math.is_nan(matrix), checks_nan[None, :])
                | tf.logical_and(tf.math.is_inf(matrix), checks_inf[None, :])
            )
            bad = tf.logical_and(outside, tf.logical_not(missing)) | tf.logical_and(
                missing, required[None, :]
            )
            bad = bad | tf.stack([too_many[f.name] for f in numeric], axis=1)
            vectors.append(tf.reduce_any(bad, axis=0))
        for f in strings:
            value = parsed[f.name]
            missing = tf.equal(value, _BYTES_MISSING)
            bad = tf.logical_and(missing, f.required) | too_many[f.name]
            if f.allowed is not None:
                allowed = tf.constant(sorted(f.allowed), dtype=tf.string)
                member = tf.reduce_any(tf.equal(value[:, None], allowed[None, :]), axis=1)
                bad = bad | tf.logical_and(tf.logical_not(member), tf.logical_not(missing))
            scalars.append(tf.reduce_any(bad))
        n = tf.shape(serialized)[0]
        for f in multi:
            sparse = parsed[f.name]
            counts = tf.math.bincount(
                tf.cast(sparse.indices[:, 0], tf.int32), minlength=n, maxlength=n, dtype=tf.int32
            )
            low_count = max(f.min_values, 1)
            bad = tf.reduce_any(tf.logical_and(counts > 0, counts < low_count))
            if f.max_values is not None:
                bad = bad | tf.reduce_any(counts > f.max_values)
            if f.required:
                bad = bad | tf.reduce_any(counts == 0)
            values = sparse.values
            if f.allowed is not None:
                allowed = tf.constant(sorted(f.allowed), dtype=tf.string)
                member = tf.reduce_any(tf.equal(values[:, None], allowed[None, :]), axis=1)
                bad = bad | tf.reduce_any(tf.logical_not(member))
            elif f.checks_nan or f.disallow_inf:
                numbers = tf.cast(values, tf.float64)
                out = tf.math.is_nan(numbers) if f.checks_nan else tf.zeros_like(numbers, tf.bool)
                if f.disallow_inf:
                    out = out | tf.math.is_inf(numbers)
                if f.minimum is not None:
                    out = out | (numbers < f.minimum)
                if f.maximum is not None:
                    out = out | (numbers > f.maximum)
                bad = bad | tf.reduce_any(out)
            scalars.append(bad)
        if scalars:
            vectors.append(tf.stack(scalars))
        flags = vectors[0] if len(vectors) == 1 else tf.concat(vectors, axis=0)
        return tf.gather(flags, order)

    return detect.get_concrete_function()
