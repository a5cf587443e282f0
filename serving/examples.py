"""Builds tf.Examples from CSV rows or JSON feature dicts, as the schema types them."""

from __future__ import annotations

import base64
import logging
import math
from collections.abc import Iterable, Mapping, Sequence

import tensorflow as tf

from serving.schema import BYTES, FLOAT, INT, FeatureSpec

logger = logging.getLogger(__name__)

Value = object


class ExampleBuildError(ValueError):
    """A row cannot become a valid tf.Example (required feature missing, bad value)."""


def _is_missing(value: object) -> bool:
    if value is None:
        return True
    if isinstance(value, str) and value.strip() == "":
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, (list, tuple)) and not value


def _as_int(name: str, value: object) -> int:
    if isinstance(value, bool):
        raise ExampleBuildError(f"Feature {name!r}: boolean {value!r} is not an INT value")
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if value.is_integer():
            return int(value)
        raise ExampleBuildError(f"Feature {name!r}: {value!r} is not an integer")
    if isinstance(value, (str, bytes)):
        text = value.decode() if isinstance(value, bytes) else value
        try:
            return int(text.strip())
        except ValueError:
            try:
                number = float(text)
            except ValueError:
                raise ExampleBuildError(f"Feature {name!r}: {value!r} is not an integer") from None
            if number.is_integer():
                return int(number)
            raise ExampleBuildError(f"Feature {name!r}: {value!r} is not an integer") from None
    raise ExampleBuildError(f"Feature {name!r}: {type(value).__name__} is not an INT value")


def _as_float(name: str, value: object) -> float:
    if isinstance(value, bool):
        raise ExampleBuildError(f"Feature {name!r}: boolean {value!r} is not a FLOAT value")
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, (str, bytes)):
        try:
            return float(value)
        except ValueError:
            raise ExampleBuildError(f"Feature {name!r}: {value!r} is not a number") from None
    raise ExampleBuildError(f"Feature {name!r}: {type(value).__name__} is not a FLOAT value")


def _as_bytes(name: str, value: object) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value).encode("utf-8")
    raise ExampleBuildError(f"Feature {name!r}: {type(value).__name__} is not a BYTES value")


class ExampleBuilder:
    """Turns raw rows into tf.Examples typed by the schema's features.

    Missing optional features are left out of the example (never filled with defaults);
    a missing required feature is an error. Columns the environment does not know (for
    example the label source `tips` at serving time) are dropped.
    """

    def __init__(self, features: Sequence[FeatureSpec]) -> None:
        """Creates a builder.

        Args:
          features: The environment's features, e.g. from `schema.load_features`.
        """
        self._features = {f.name: f for f in features}

    @property
    def feature_names(self) -> list[str]:
        """Names of the features the builder writes."""
        return list(self._features)

    def build(self, row: Mapping[str, Value]) -> tf.train.Example:
        """Builds one example.

        Args:
          row: Feature name to value: a scalar, a list of scalars, a CSV string, or None
            (or an empty string) for missing.

        Returns:
          The tf.Example.

        Raises:
          ExampleBuildError: If a required feature is missing or a value has the wrong type.
        """
        example = tf.train.Example()
        fmap = example.features.feature
        for name, spec in self._features.items():
            value = row.get(name)
            if _is_missing(value):
                if spec.required:
                    raise ExampleBuildError(f"Required feature {name!r} is missing")
                continue
            values = list(value) if isinstance(value, (list, tuple)) else [value]
            if spec.kind == INT:
                fmap[name].int64_list.value.extend(_as_int(name, v) for v in values)
            elif spec.kind == FLOAT:
                fmap[name].float_list.value.extend(_as_float(name, v) for v in values)
            elif spec.kind == BYTES:
                fmap[name].bytes_list.value.extend(_as_bytes(name, v) for v in values)
        unknown = set(row) - set(self._features)
        if unknown:
            logger.debug("Dropped columns outside the environment: %s", sorted(unknown))
        return example

    def build_all(self, rows: Iterable[Mapping[str, Value]]) -> list[tf.train.Example]:
        """Builds one example per row.

        Args:
          rows: Rows as for `build`.

        Returns:
          The examples, in order.

        Raises:
          ExampleBuildError: For the first bad row, with its index.
        """
        out = []
        for index, row in enumerate(rows):
            try:
                out.append(self.build(row))
            except ExampleBuildError as e:
                raise ExampleBuildError(f"Row {index}: {e}") from None
        return out


def example_to_json(example: tf.train.Example) -> dict[str, object]:
    """Returns an example as TF Serving's REST classify/regress JSON feature dict.

    Args:
      example: A tf.Example.

    Returns:
      Feature name to a scalar or list; floats stay floats in JSON (`1.0`), bytes that are
      not UTF-8 become `{"b64": ...}`.
    """
    out: dict[str, object] = {}
    for name, feature in example.features.feature.items():
        kind = feature.WhichOneof("kind")
        values: list[object]
        if kind == "int64_list":
            values = list(feature.int64_list.value)
        elif kind == "float_list":
            values = [float(v) for v in feature.float_list.value]
        elif kind == "bytes_list":
            values = []
            for raw in feature.bytes_list.value:
                try:
                    values.append(raw.decode("utf-8"))
                except UnicodeDecodeError:
                    values.append({"b64": base64.b64encode(raw).decode("ascii")})
        else:
            continue
        out[name] = values[0] if len(values) == 1 else values
    return out
