"""Feature roles read from the curated schema: the one source of truth for features.

Each feature in `schemas/taxi/schema.pbtxt` carries an annotation tag `role:<name>`; this module
groups features by role so the transform, the model, the label and the serving signature all
follow the schema instead of hard-coded name lists.
"""

import dataclasses
import functools

from google.protobuf import text_format
from tensorflow_metadata.proto.v0 import schema_pb2

import schemas

LABEL_KEY = "big_tipper"
"""Name of the transformed label: tips > TIP_FRACTION * fare."""
TIP_FRACTION = 0.2
FARE_KEY = "fare"
VOCAB_SIZE = 100
"""Top-k kept by each vocabulary; rarer values share the OOV buckets."""
OOV_SIZE = 1
BUCKET_COUNT = 10

ROLES = ("zscore", "bucketize", "vocab", "categorical_int", "label_source", "split_key", "unused")
MODEL_INPUT_ROLES = ("zscore", "bucketize", "vocab", "categorical_int")


@dataclasses.dataclass(frozen=True)
class FeatureSpec:
    """Roles of the raw features, as the curated schema declares them.

    Attributes:
      by_role: Role name -> raw feature names in schema order.
      categorical_max: Max value of each `categorical_int` feature (from its int_domain).
      label_source: The raw column the label derives from (never a model input).
      split_key: The column that orders the data in time for the train/eval split.
    """

    by_role: dict[str, tuple[str, ...]]
    categorical_max: dict[str, int]
    label_source: str
    split_key: str

    @property
    def model_inputs(self) -> tuple[str, ...]:
        """Raw features the model consumes, in a stable order."""
        return tuple(name for role in MODEL_INPUT_ROLES for name in self.by_role[role])


def load_schema(path: str | None = None) -> schema_pb2.Schema:
    """Parses a schema text file (default: the curated taxi schema).

    Args:
      path: Schema file; None means `schemas.schema_path("taxi")`.

    Returns:
      The parsed schema.
    """
    with open(path or schemas.schema_path("taxi")) as f:
        return text_format.Parse(f.read(), schema_pb2.Schema())


def _role_of(feature: schema_pb2.Feature) -> str:
    roles = [t.split(":", 1)[1] for t in feature.annotation.tag if t.startswith("role:")]
    if len(roles) != 1 or roles[0] not in ROLES:
        raise ValueError(
            f"Feature {feature.name!r} must carry exactly one annotation tag role:<one of {ROLES}>,"
            f" got tags {list(feature.annotation.tag)}"
        )
    return roles[0]


def feature_spec_from_schema(schema: schema_pb2.Schema) -> FeatureSpec:
    """Groups the schema's features by their `role:` annotation.

    Args:
      schema: A schema whose features carry `role:<name>` annotation tags.

    Returns:
      The feature roles.

    Raises:
      ValueError: If a feature has no valid role, a categorical feature has no int_domain max,
        or there is not exactly one label source and one split key.
    """
    by_role: dict[str, list[str]] = {role: [] for role in ROLES}
    categorical_max: dict[str, int] = {}
    for feature in schema.feature:
        role = _role_of(feature)
        by_role[role].append(feature.name)
        if role == "categorical_int":
            if not feature.HasField("int_domain") or not feature.int_domain.HasField("max"):
                raise ValueError(f"categorical_int feature {feature.name!r} needs int_domain.max")
            categorical_max[feature.name] = feature.int_domain.max
    for role in ("label_source", "split_key"):
        if len(by_role[role]) != 1:
            raise ValueError(f"The schema must have exactly one role:{role}, got {by_role[role]}")
    return FeatureSpec(
        by_role={role: tuple(names) for role, names in by_role.items()},
        categorical_max=categorical_max,
        label_source=by_role["label_source"][0],
        split_key=by_role["split_key"][0],
    )


@functools.lru_cache(maxsize=1)
def taxi_features() -> FeatureSpec:
    """Returns the feature roles of the curated taxi schema (parsed once per process)."""
    return feature_spec_from_schema(load_schema())


def transformed_name(key: str) -> str:
    """Name of a feature after Transform."""
    return f"{key}_xf"
