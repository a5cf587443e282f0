"""Served predictions equal the in-process SavedModel's on the same examples."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from serving.client import ModelRef, PredictionClient, RestClient
from serving.examples import ExampleBuilder
from serving.schema import FeatureSpec
from serving.smoke import serve_and_predict
from tests.serving.conftest import MODEL, Target, install_version
from tests.serving.support import fixture


@pytest.fixture(scope="module")
def varied(features: tuple[FeatureSpec, ...]) -> list[bytes]:
    """200 valid examples spread over the schema's domains, optional features often missing."""
    rng = np.random.default_rng(7)
    base = fixture.sample_rows()
    rows = []
    for i in range(200):
        row = dict(base[i % len(base)])
        row["fare"] = float(np.round(rng.uniform(3, 80), 2))
        row["trip_miles"] = float(np.round(rng.uniform(0, 30), 2))
        row["trip_start_hour"] = int(rng.integers(0, 24))
        row["trip_start_month"] = int(rng.integers(1, 13))
        row["trip_seconds"] = None if i % 5 == 0 else int(rng.integers(60, 5000))
        rows.append(row)
    return [e.SerializeToString() for e in ExampleBuilder(features).build_all(rows)]


def test_served_equals_in_process(
    target: Target,
    grpc_client: PredictionClient,
    rest_client: RestClient,
    model_library: dict[int, str],
    varied: list[bytes],
) -> None:
    if not target.embedded:
        pytest.skip("compares with the fixture SavedModel the embedded server serves")
    local = tf.saved_model.load(model_library[2])
    batch = tf.constant(varied)
    probs = local.signatures["serving_default"](examples=batch)["probabilities"].numpy()
    scores = local.signatures["classify"](inputs=batch)["scores"].numpy()
    values = local.signatures["regress"](inputs=batch)["outputs"].numpy()
    ref = ModelRef(MODEL, version=2)
    np.testing.assert_allclose(
        grpc_client.predict(ref, varied).outputs["probabilities"], probs, rtol=1e-6, atol=1e-7
    )
    one_by_one = np.concatenate(
        [grpc_client.predict(ref, [e]).outputs["probabilities"] for e in varied[:10]]
    )
    np.testing.assert_allclose(one_by_one, probs[:10], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        rest_client.predict(ref, varied).outputs["predictions"], probs, rtol=1e-6, atol=1e-7
    )
    got = np.array([[s for _, s in row] for row in grpc_client.classify(ref, varied).classes])
    np.testing.assert_allclose(got, scores, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(
        grpc_client.regress(ref, varied).values, values, rtol=1e-6, atol=1e-7
    )
    rest_scores = np.array(
        [[s for _, s in row] for row in rest_client.classify(ref, varied).classes]
    )
    np.testing.assert_allclose(rest_scores, scores, rtol=1e-6, atol=1e-7)


def test_smoke_serve_and_predict(tmp_path, model_library: dict[int, str], features) -> None:  # type: ignore[no-untyped-def]
    base = str(tmp_path / MODEL)
    install_version(model_library, 1, base, 1)
    install_version(model_library, 2, base, 2)
    rows = fixture.sample_rows()[:3]
    result = serve_and_predict(base, MODEL, rows, timeout_s=60)
    local = tf.saved_model.load(model_library[2])
    serialized = [e.SerializeToString() for e in ExampleBuilder(features).build_all(rows)]
    expected = local.signatures["serving_default"](examples=tf.constant(serialized))[
        "probabilities"
    ].numpy()
    assert result["model_version"] == 2
    np.testing.assert_allclose(result["scores"], expected[:, 0], rtol=1e-6)
    assert result["classes"] == ["1" if p > 0.5 else "0" for p in expected[:, 0]]
    with pytest.raises(FileNotFoundError):
        serve_and_predict(str(tmp_path / "empty"), MODEL, rows)
