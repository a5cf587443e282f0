"""preprocessing_fn through tf.Transform on a few literal rows, with asserted outputs."""

import tempfile

import numpy as np
import pytest
import tensorflow_transform.beam as tft_beam
from tensorflow_transform.tf_metadata import dataset_metadata

from model import features
from model import preprocessing as transform


def _row(fare: float, tips: float, payment: str, company: str | None, hour: int) -> dict:
    row = {
        "pickup_community_area": [8],
        "fare": [fare],
        "trip_start_month": [5],
        "trip_start_hour": [hour],
        "trip_start_day": [3],
        "trip_start_timestamp": [1400000000],
        "pickup_latitude": [41.9],
        "pickup_longitude": [-87.6],
        "dropoff_latitude": [41.8],
        "dropoff_longitude": [-87.7],
        "trip_miles": [fare / 3],
        "pickup_census_tract": [],
        "dropoff_census_tract": [17031081500],
        "payment_type": [payment.encode()],
        "company": [company.encode()] if company else [],
        "trip_seconds": [600],
        "dropoff_community_area": [32],
        "tips": [tips],
    }
    return {k: np.array(v) for k, v in row.items()}


@pytest.fixture(scope="module")
def transformed() -> list[dict]:
    rows = [
        _row(10.0, 3.0, "Credit Card", "Acme", 8),  # 30% tip: big tipper
        _row(20.0, 2.0, "Credit Card", None, 9),  # 10%: not
        _row(30.0, 0.0, "Cash", "Acme", 30),  # hour out of domain: clipped to 23
        _row(40.0, 8.01, "Credit Card", "Zed", 0),  # just above 20%
    ]
    metadata = dataset_metadata.DatasetMetadata(features.load_schema())
    with (
        tempfile.TemporaryDirectory() as tmp,
        tft_beam.Context(temp_dir=tmp, force_tf_compat_v1=False),
    ):
        (result, _), _ = (rows, metadata) | tft_beam.AnalyzeAndTransformDataset(
            transform.preprocessing_fn, output_record_batches=False
        )
    return list(result)


def test_label_is_big_tipper_from_tips_and_fare(transformed: list[dict]) -> None:
    assert [int(r[features.LABEL_KEY]) for r in transformed] == [1, 0, 0, 1]


def test_label_source_and_split_key_are_not_model_features(transformed: list[dict]) -> None:
    names = set(transformed[0])
    assert "tips_xf" not in names and "tips" not in names
    assert "trip_start_timestamp_xf" not in names
    expected = {features.transformed_name(k) for k in features.taxi_features().model_inputs}
    assert names == expected | {features.LABEL_KEY}


def test_zscore_has_zero_mean_unit_variance(transformed: list[dict]) -> None:
    fares = np.array([r["fare_xf"] for r in transformed])
    np.testing.assert_allclose(fares.mean(), 0.0, atol=1e-6)
    np.testing.assert_allclose(fares.std(), 1.0, atol=1e-5)
    assert list(np.argsort(fares)) == [0, 1, 2, 3]


def test_vocab_maps_frequent_values_first_and_missing_to_its_own_token(
    transformed: list[dict],
) -> None:
    payment = [int(r["payment_type_xf"]) for r in transformed]
    assert payment[0] == payment[1] == payment[3] == 0  # "Credit Card" is most frequent
    assert payment[2] == 1
    company = [int(r["company_xf"]) for r in transformed]
    assert company[0] == company[2] == 0  # "Acme" twice
    assert len({company[1], company[3]}) == 2 and 0 not in (company[1], company[3])


def test_categorical_ints_are_clipped_to_the_schema_domain(transformed: list[dict]) -> None:
    assert [int(r["trip_start_hour_xf"]) for r in transformed] == [8, 9, 23, 0]
