"""Reads the curated schema's features for one environment (SERVING by default)."""

from __future__ import annotations

import dataclasses
import math

from google.protobuf import text_format
from tensorflow_metadata.proto.v0 import schema_pb2

INT = "int"
FLOAT = "float"
BYTES = "bytes"
_TYPES = {schema_pb2.INT: INT, schema_pb2.FLOAT: FLOAT, schema_pb2.BYTES: BYTES}


@dataclasses.dataclass(frozen=True)
class FeatureSpec:
    """One feature as the schema constrains it in an environment.

    Attributes:
      name: Feature name.
      kind: `int`, `float` or `bytes` (the tf.Example list it must use).
      required: True when presence.min_fraction is 1.0: every example must carry it.
      min_values: Fewest values a present feature may have.
      max_values: Most values a present feature may have (None = unbounded).
      minimum: Lowest allowed value of an int or float feature (None = unbounded).
      maximum: Highest allowed value (None = unbounded).
      allowed: Allowed string values (None = any).
      disallow_nan: NaN is a violation (the float domain's `disallow_nan`; also whenever the
        domain has bounds, as before).
      disallow_inf: +-Infinity is a violation (the float domain's `disallow_inf`), also
        values that overflow float32 (1e300 in JSON becomes inf in a float_list).
    """

    name: str
    kind: str
    required: bool
    min_values: int = 0
    max_values: int | None = None
    minimum: float | None = None
    maximum: float | None = None
    allowed: frozenset[str] | None = None
    disallow_nan: bool = False
    disallow_inf: bool = False

    @property
    def checks_nan(self) -> bool:
        """NaN is refused: disallowed, or outside any bounded domain."""
        return self.disallow_nan or self.minimum is not None or self.maximum is not None

    def describe_domain(self) -> str:
        """Returns the domain in words, for error messages."""
        if self.allowed is not None:
            return "one of " + ", ".join(sorted(self.allowed))
        low = "-inf" if self.minimum is None else f"{self.minimum:g}"
        high = "inf" if self.maximum is None else f"{self.maximum:g}"
        finite = " and finite" if self.disallow_inf else ""
        return f"in [{low}, {high}]{finite}"


def _in_environment(feature: schema_pb2.Feature, schema: schema_pb2.Schema, env: str) -> bool:
    if feature.in_environment:
        return env in feature.in_environment
    if env in feature.not_in_environment:
        return False
    return env in schema.default_environment or not schema.default_environment


def load_schema(path: str) -> schema_pb2.Schema:
    """Parses a text-format schema file.

    Args:
      path: Path of a `schema.pbtxt`.

    Returns:
      The Schema proto.

    Raises:
      OSError: If the file cannot be read.
      google.protobuf.text_format.ParseError: If it is not a text Schema.
    """
    with open(path, encoding="utf-8") as f:
        return text_format.Parse(f.read(), schema_pb2.Schema())


def features_for_environment(
    schema: schema_pb2.Schema, env: str = "SERVING"
) -> tuple[FeatureSpec, ...]:
    """Returns the constraints of every feature the schema expects in an environment.

    Args:
      schema: The schema proto.
      env: Environment name, e.g. `SERVING`.

    Returns:
      One FeatureSpec per feature of the environment, in schema order.

    Raises:
      ValueError: If a feature has a type other than INT, FLOAT or BYTES, or names a
        string domain the schema does not define.
    """
    string_domains = {d.name: frozenset(d.value) for d in schema.string_domain}
    specs = []
    for feature in schema.feature:
        if not _in_environment(feature, schema, env):
            continue
        if feature.type not in _TYPES:
            raise ValueError(f"Feature {feature.name!r} has unsupported type {feature.type}")
        minimum = maximum = None
        allowed = None
        disallow_nan = disallow_inf = False
        domain = feature.WhichOneof("domain_info")
        if domain == "int_domain":
            d = feature.int_domain
            minimum = float(d.min) if d.HasField("min") else None
            maximum = float(d.max) if d.HasField("max") else None
        elif domain == "float_domain":
            fd = feature.float_domain
            minimum = fd.min if fd.HasField("min") and not math.isinf(fd.min) else None
            maximum = fd.max if fd.HasField("max") and not math.isinf(fd.max) else None
            # The same rules TFDV applies in the pipeline (schema.proto FloatDomain).
            disallow_nan, disallow_inf = fd.disallow_nan, fd.disallow_inf
        elif domain == "domain":
            if feature.domain not in string_domains:
                raise ValueError(
                    f"Feature {feature.name!r} names unknown domain {feature.domain!r}"
                )
            allowed = string_domains[feature.domain]
        elif domain == "string_domain":
            allowed = frozenset(feature.string_domain.value)
        required = feature.presence.min_fraction >= 1.0
        min_values = feature.value_count.min if feature.HasField("value_count") else 0
        max_values = (
            feature.value_count.max
            if feature.HasField("value_count") and feature.value_count.max > 0
            else None
        )
        specs.append(
            FeatureSpec(
                name=feature.name,
                kind=_TYPES[feature.type],
                required=required,
                min_values=min_values,
                max_values=max_values,
                minimum=minimum,
                maximum=maximum,
                allowed=allowed,
                disallow_nan=disallow_nan,
                disallow_inf=disallow_inf,
            )
        )
    return tuple(specs)


def load_features(path: str, env: str = "SERVING") -> tuple[FeatureSpec, ...]:
    """Reads a schema file and returns the features of one environment.

    Args:
      path: Path of a `schema.pbtxt`.
      env: Environment name.

    Returns:
      See `features_for_environment`.

    Raises:
      OSError, google.protobuf.text_format.ParseError, ValueError: See the helpers.
    """
    return features_for_environment(load_schema(path), env)
