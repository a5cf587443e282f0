"""The curated schema: parses, covers every feature the code uses, and diffs against new data."""

import csv

import pytest
from tensorflow_metadata.proto.v0 import schema_pb2

import schemas
from components.data_prep.source import default_source
from model import features
from operations import schema_tools


def test_schema_parses_and_roles_come_from_its_tags() -> None:
    schema = features.load_schema()
    spec = features.feature_spec_from_schema(schema)
    assert spec.label_source == "tips" and spec.split_key == "trip_start_timestamp"
    assert features.FARE_KEY in spec.by_role["zscore"]


@pytest.mark.parametrize(
    "tags", [[], ["role:zscore", "role:vocab"], ["role:no_such_role"]], ids=["none", "two", "bad"]
)
def test_a_feature_without_exactly_one_known_role_is_refused_by_name(tags) -> None:
    schema = features.load_schema()
    feature = next(f for f in schema.feature if f.name == "trip_miles")
    del feature.annotation.tag[:]
    feature.annotation.tag.extend(tags)
    with pytest.raises(ValueError, match="'trip_miles' must carry exactly one annotation tag"):
        features.feature_spec_from_schema(schema)


def test_schema_covers_every_column_of_the_embedded_data() -> None:
    with open(f"{default_source()}/data.csv") as f:
        header = next(csv.reader(f))
    assert {f.name for f in features.load_schema().feature} == set(header)


def test_label_source_is_absent_at_serving_and_never_a_model_input() -> None:
    schema = features.load_schema()
    serving = {f.name for f in schema.feature if "SERVING" not in f.not_in_environment}
    spec = features.taxi_features()
    assert "tips" not in serving
    assert set(spec.model_inputs) <= serving
    assert "tips" not in spec.model_inputs and "trip_start_timestamp" not in spec.model_inputs
    assert list(schema.default_environment) == ["TRAINING", "SERVING"]


def test_categorical_features_need_a_domain_max() -> None:
    schema = features.load_schema()
    broken = schema_pb2.Schema()
    broken.CopyFrom(schema)
    for feature in broken.feature:
        if feature.name == "trip_start_hour":
            feature.ClearField("int_domain")
    with pytest.raises(
        ValueError, match=r"categorical_int feature .trip_start_hour. needs int_domain\.max"
    ):
        features.feature_spec_from_schema(broken)


def test_schema_diff_reports_new_values_new_columns_and_anomalies(tmp_path) -> None:
    source = f"{default_source()}/data.csv"
    with open(source) as f:
        rows = list(csv.DictReader(f))[:300]
    for row in rows[:10]:
        row["payment_type"] = "Crypto"
    path = tmp_path / "new.csv"
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=[*rows[0], "tolls"])
        writer.writeheader()
        writer.writerows({**row, "tolls": "0.5"} for row in rows)
    report = schema_tools.schema_diff_report(str(path), schemas.schema_path("taxi"))
    assert "+ tolls: new in the data" in report
    assert "~ payment_type: new values ['Crypto']" in report
    assert "payment_type: Unexpected string values" in report


def test_every_float_feature_forbids_nan_and_infinities() -> None:
    # The one rule the pipeline (ExampleValidator) and the server's validation both read.
    floats = [f for f in features.load_schema().feature if f.type == schema_pb2.FLOAT]
    assert {f.name for f in floats} >= {"fare", "trip_miles", "tips"}
    for feature in floats:
        domain = feature.float_domain
        assert domain.disallow_nan and domain.disallow_inf, feature.name


def test_nan_labels_and_infinite_fares_are_anomalies_naming_feature_and_reason(tmp_path) -> None:
    with open(f"{default_source()}/data.csv") as f:
        rows = list(csv.DictReader(f))[:400]
    for i, row in enumerate(rows):
        if i % 20 == 0:  # 5% of the label source
            row["tips"] = "nan"
        if i % 10 == 3:  # 10% of fares
            row["fare"] = "inf" if i % 20 == 3 else "NaN"
    path = tmp_path / "nan.csv"
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    report = schema_tools.schema_diff_report(str(path), schemas.schema_path("taxi"))
    anomalies = report.split("Anomalies of the data against the curated schema:")[1]
    assert "tips: Invalid values (Float feature has NaN values.)" in anomalies
    fare = next(line for line in anomalies.splitlines() if line.strip().startswith("fare:"))
    assert "Float feature has NaN values." in fare and "Float feature has Inf values." in fare
    assert "trip_miles" not in anomalies
