"""Schema reading, example building, and the two validation paths agreeing on every rule."""

from __future__ import annotations

import math

import numpy as np
import pytest
import tensorflow as tf

from serving.errors import InvalidArgumentError
from serving.examples import ExampleBuilder, ExampleBuildError, example_to_json
from serving.schema import FeatureSpec
from serving.validation import ExampleValidator
from tests.serving.conftest import mutate
from tests.serving.support import fixture


def test_serving_environment(features: tuple[FeatureSpec, ...]) -> None:
    by_name = {f.name: f for f in features}
    assert "tips" not in by_name and len(by_name) == 17
    assert (
        by_name["fare"].required
        and by_name["fare"].kind == "float"
        and by_name["fare"].minimum == 0.0
    )
    assert not by_name["company"].required and by_name["company"].allowed is None
    assert by_name["trip_start_hour"].maximum == 23.0
    assert by_name["payment_type"].allowed is not None and "Cash" in by_name["payment_type"].allowed
    assert all(f.max_values == 1 for f in features)


def test_example_builder(features: tuple[FeatureSpec, ...]) -> None:
    builder = ExampleBuilder(features)
    row = {k: (None if v is None else str(v)) for k, v in fixture.sample_rows()[1].items()}
    row["tips"] = "1.5"  # not a SERVING feature: dropped
    row["company"] = ""  # CSV empty cell: missing, never filled
    example = builder.build(row)
    fmap = example.features.feature
    assert "tips" not in fmap and "company" not in fmap and "pickup_census_tract" not in fmap
    assert fmap["fare"].float_list.value[0] == pytest.approx(8.5)
    assert fmap["trip_start_hour"].int64_list.value == [3]
    assert fmap["payment_type"].bytes_list.value == [b"Cash"]
    with pytest.raises(ExampleBuildError, match="fare"):
        builder.build({**row, "fare": None})
    with pytest.raises(ExampleBuildError, match="trip_start_hour"):
        builder.build({**row, "trip_start_hour": "3.5"})
    with pytest.raises(ExampleBuildError, match="Row 1"):
        builder.build_all([row, {**row, "trip_miles": "far"}])
    assert builder.build({**row, "trip_start_hour": 4.0}).features.feature[
        "trip_start_hour"
    ].int64_list.value == [4]
    as_json = example_to_json(example)
    assert isinstance(as_json["fare"], float) and as_json["payment_type"] == "Cash"


CASES = [
    ({}, None),
    ({"company": None, "pickup_latitude": None}, None),
    ({"fare": None}, "fare"),
    ({"fare": -1.0}, "fare"),
    ({"fare": math.nan}, "fare"),
    ({"fare": 5}, "fare"),
    ({"trip_start_hour": 24}, "trip_start_hour"),
    ({"trip_start_day": 0}, "trip_start_day"),
    ({"pickup_longitude": -90.5}, "pickup_longitude"),
    ({"payment_type": "Bitcoin"}, "payment_type"),
    ({"payment_type": 3}, "payment_type"),
    ({"company": 7}, "company"),
]


@pytest.mark.parametrize("change,feature", CASES)
def test_python_and_tensorflow_paths_agree(
    features: tuple[FeatureSpec, ...],
    examples: list[bytes],
    change: dict[str, object],
    feature: str | None,
) -> None:
    python = ExampleValidator(features, python_max_batch=10**6)
    graph = ExampleValidator(features, python_max_batch=0)
    batch = np.array((examples * 4)[:12], dtype=object)
    batch[7] = mutate(batch[7], **change)
    for validator in (python, graph):
        if feature is None:
            validator.check(batch, "examples")
        else:
            with pytest.raises(InvalidArgumentError) as info:
                validator.check(batch, "examples")
            assert f"'{feature}'" in info.value.message and "example 7" in info.value.message


def test_two_values_and_garbage(features: tuple[FeatureSpec, ...], examples: list[bytes]) -> None:
    e = tf.train.Example.FromString(examples[0])
    e.features.feature["trip_miles"].float_list.value.append(2.0)
    for limit in (0, 10**6):
        validator = ExampleValidator(features, python_max_batch=limit)
        with pytest.raises(InvalidArgumentError, match="trip_miles"):
            validator.check(np.array([examples[1], e.SerializeToString()], dtype=object), "inputs")
        with pytest.raises(InvalidArgumentError, match="could not be parsed"):
            validator.check(np.array([examples[1], b"\x0a\xff\xff"], dtype=object), "inputs")


@pytest.mark.parametrize(
    ("feature", "kind"), [("company", "bytes_list"), ("trip_miles", "float_list")]
)
def test_an_empty_value_list_is_a_missing_value_on_both_paths(
    features: tuple[FeatureSpec, ...], examples: list[bytes], feature: str, kind: str
) -> None:
    # CsvExampleGen writes a missing CSV cell as the feature with an empty list; the model's
    # parser reads that as missing, so validation must too (optional: fine; required: named).
    e = tf.train.Example.FromString(examples[0])
    e.features.feature[feature].Clear()
    getattr(e.features.feature[feature], kind).SetInParent()
    required = next(f for f in features if f.name == feature).required
    for limit in (0, 10**6):
        validator = ExampleValidator(features, python_max_batch=limit)
        batch = np.array([examples[1], e.SerializeToString()], dtype=object)
        if required:
            with pytest.raises(InvalidArgumentError, match=f"'{feature}'.*missing"):
                validator.check(batch, "inputs")
        else:
            validator.check(batch, "inputs")
