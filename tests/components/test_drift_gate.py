"""DriftGate: TFDV comparisons on tiny real statistics, the executor's outcomes on tiny real
artifacts, and end to end: after a normal push, a resample passes while a vanished column and a
unit change stop the run before anything is pushed, naming the feature."""

import glob
import json
import os
import random

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
import tensorflow_data_validation as tfdv
from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2
from tensorflow_metadata.proto.v0 import statistics_pb2
from tfx.types import standard_artifacts

import model_contract
import schemas
from components import ui_artifacts
from components.data_prep import source as source_lib
from components.drift_gate import drift, executor
from metadata import lineage_graph
from metadata import store as mlmd
from model import features
from operations import summary
from runners import local as local_runner
from tests.support import production as conftest


def _frame(rows: int = 2000, seed: int = 0, card_share: float = 0.5) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "fare": rng.gamma(2.0, 5.0, rows),
            "trip_miles": rng.gamma(1.5, 2.0, rows),
            "trip_seconds": rng.gamma(2.0, 300.0, rows).round().astype(np.int64),
            "payment_type": np.where(rng.random(rows) < card_share, "Credit Card", "Cash"),
            "company": rng.choice(["Taxi Affiliation Services", "Dispatch Taxi", None], rows),
        }
    )


def _sample(rows: int = 300) -> pd.DataFrame:
    """The first rows of the taxi sample: every schema column, real values."""
    return pd.read_csv(os.path.join(source_lib.default_source(), "data.csv"), nrows=rows)


def _stats(frame: pd.DataFrame):
    return tfdv.generate_statistics_from_dataframe(frame, drift.stats_options())


def _by_key(checks: list[drift.FeatureCheck]) -> dict[tuple[str, str], drift.FeatureCheck]:
    return {(c.feature, c.measure): c for c in checks}


@pytest.fixture(scope="module")
def schema():
    return features.load_schema()


@pytest.fixture(scope="module")
def baseline():
    return _stats(_frame(seed=0))


def test_a_resample_of_the_same_distribution_passes(schema, baseline) -> None:
    checks = _by_key(drift.compare_statistics(_stats(_frame(seed=1)), baseline, schema))
    for key in [
        ("fare", drift.JENSEN_SHANNON),
        ("trip_miles", drift.JENSEN_SHANNON),
        ("payment_type", drift.L_INFINITY),
        ("company", drift.L_INFINITY),
        ("company", drift.PRESENCE),
    ]:
        assert checks[key].passed, checks[key].describe()
    assert checks[("fare", drift.JENSEN_SHANNON)].threshold == 0.5
    assert checks[("company", drift.PRESENCE)].threshold == 0.4


def test_a_unit_change_on_a_numeric_feature_fails_its_jensen_shannon_threshold(
    schema, baseline
) -> None:
    changed = _frame(seed=1)
    changed["fare"] *= 1000
    checks = _by_key(drift.compare_statistics(_stats(changed), baseline, schema))
    fare = checks[("fare", drift.JENSEN_SHANNON)]
    assert not fare.passed and fare.value > 0.8
    assert fare.describe().startswith("feature 'fare': Jensen-Shannon divergence ")
    assert "> threshold 0.5" in fare.describe()
    assert checks[("trip_miles", drift.JENSEN_SHANNON)].passed


def test_a_resample_is_within_the_wasserstein_thresholds(schema, baseline) -> None:
    checks = _by_key(drift.compare_statistics(_stats(_frame(seed=1)), baseline, schema))
    for feature in ("fare", "trip_miles", "trip_seconds"):
        check = checks[(feature, drift.WASSERSTEIN)]
        assert check.passed and check.value < 0.1, check.describe()
        assert check.threshold == drift.thresholds(schema)[(feature, drift.WASSERSTEIN)]


@pytest.mark.parametrize(
    ("feature", "factor", "change"),
    [
        ("trip_miles", 1.609344, "miles to km"),
        ("trip_seconds", 1 / 60, "seconds to minutes"),
        ("fare", 100.0, "dollars to cents"),
    ],
)
def test_a_unit_change_fails_the_wasserstein_threshold(
    schema, baseline, feature: str, factor: float, change: str
) -> None:
    changed = _frame(seed=1)
    changed[feature] = changed[feature] * factor
    if feature == "trip_seconds":
        changed[feature] = changed[feature].round().astype(np.int64)
    checks = _by_key(drift.compare_statistics(_stats(changed), baseline, schema))
    check = checks[(feature, drift.WASSERSTEIN)]
    assert not check.passed, (change, check.describe())
    assert check.describe().startswith(f"feature {feature!r}: Wasserstein distance / IQR ")
    # The frame has a few columns only: their presence floors are not the point here.
    failed = {key for key, c in checks.items() if not c.passed and c.measure != drift.PRESENCE}
    assert {name for name, _ in failed} == {feature}, failed
    if change == "miles to km":
        assert checks[(feature, drift.JENSEN_SHANNON)].passed  # What the gate missed before.


def test_wasserstein_distance_reads_in_baseline_iqrs_and_needs_finite_quantiles() -> None:
    rng = np.random.default_rng(0)
    values = rng.normal(10.0, 2.0, 4000)
    iqr = 2.0 * 1.349  # of a normal distribution with standard deviation 2

    def numeric(column: np.ndarray):
        return _stats(pd.DataFrame({"x": column})).datasets[0].features[0].num_stats

    base = numeric(values)
    assert drift.wasserstein_iqr(numeric(values), base) == 0.0
    shifted = drift.wasserstein_iqr(numeric(values + iqr), base)
    assert shifted == pytest.approx(1.0, abs=0.05)
    halves = drift.wasserstein_iqr(numeric(values[::2]), numeric(values[1::2]))
    assert halves is not None and halves < 0.05
    infinite = values.copy()
    infinite[: len(values) // 4] = np.inf  # More than the top decile: the 90th percentile too.
    assert drift.wasserstein_iqr(numeric(infinite), base) == float("inf")
    assert drift.wasserstein_iqr(numeric(values), statistics_pb2.NumericStatistics()) is None


def test_wasserstein_thresholds_live_in_the_schema_as_annotation_tags(schema) -> None:
    thresholds = drift.thresholds(schema)
    for feature in ("fare", "trip_miles", "trip_seconds"):
        assert (feature, drift.WASSERSTEIN) in thresholds
    changed = drift.set_thresholds(
        schema, l_infinity={}, jensen_shannon={}, wasserstein={"fare": 9}
    )
    assert drift.thresholds(changed)[("fare", drift.WASSERSTEIN)] == 9.0
    assert features.feature_spec_from_schema(changed).label_source == "tips"  # roles still read
    broken = drift.set_thresholds(schema, l_infinity={}, jensen_shannon={})
    fare = next(f for f in broken.feature if f.name == "fare")
    fare.annotation.tag.append(drift.WASSERSTEIN_TAG + "lots")
    with pytest.raises(ValueError, match="Feature 'fare' must carry at most one annotation tag"):
        drift.thresholds(broken)


def test_a_collapsed_category_share_fails_the_l_infinity_threshold(schema, baseline) -> None:
    collapsed = _stats(_frame(seed=1, card_share=0.05))
    checks = _by_key(drift.compare_statistics(collapsed, baseline, schema))
    payment = checks[("payment_type", drift.L_INFINITY)]
    assert not payment.passed and payment.value > 0.3, payment.describe()


def test_a_vanished_column_fails_its_presence_floor(schema, baseline) -> None:
    checks = _by_key(
        drift.compare_statistics(_stats(_frame(seed=1).drop(columns=["company"])), baseline, schema)
    )
    presence = checks[("company", drift.PRESENCE)]
    assert not presence.passed and presence.value == 0.0
    assert presence.baseline == pytest.approx(2 / 3, abs=0.1)
    assert "fraction present 0 < threshold 0.4" in presence.describe()
    # No distribution left to compare: the presence check is what catches it.
    assert ("company", drift.L_INFINITY) not in checks


def test_markdown_table_lists_failed_checks_first(schema, baseline) -> None:
    changed = _frame(seed=1)
    changed["fare"] *= 1000
    table = drift.markdown_table(drift.compare_statistics(_stats(changed), baseline, schema))
    rows = table.splitlines()
    assert rows[0].startswith("| feature | measure | value | threshold")
    results = ["**STOP**" in row for row in rows[2:]]
    assert results == sorted(results, reverse=True)  # Every stop above every pass.
    fare = next(row for row in rows if row.startswith("| fare | Jensen-Shannon divergence |"))
    assert "| ≤ 0.5 |" in fare and "**STOP**" in fare
    assert any(
        row.startswith("| trip\\_miles | Jensen-Shannon") and "| ok |" in row for row in rows
    )


def _gate_artifacts(tmp_path, frame: pd.DataFrame):
    statistics = standard_artifacts.ExampleStatistics()
    statistics.uri = str(tmp_path / "statistics")
    os.makedirs(os.path.join(statistics.uri, "Split-train"))
    with open(os.path.join(statistics.uri, "Split-train", "FeatureStats.pb"), "wb") as f:
        f.write(_stats(frame).SerializeToString())
    schema = standard_artifacts.Schema()
    schema.uri = os.path.dirname(schemas.schema_path("taxi"))
    validated = standard_artifacts.Schema()
    validated.uri = str(tmp_path / "validated")
    report = ui_artifacts.Markdown()
    report.uri = str(tmp_path / "report" / "value")
    os.makedirs(os.path.dirname(report.uri))
    return (
        {"statistics": [statistics], "schema": [schema]},
        {"validated_schema": [validated], "drift_report": [report]},
    )


def test_gate_before_the_first_push_records_no_baseline_and_passes(tmp_path) -> None:
    inputs, outputs = _gate_artifacts(tmp_path, _sample())
    executor.Executor().Do(
        inputs,
        outputs,
        {"model_dir": str(tmp_path / "serving" / "m"), "metadata_connection": "", "policy": "fail"},
    )
    validated = outputs["validated_schema"][0]
    assert validated.get_string_custom_property(executor.OUTCOME_PROPERTY) == executor.NO_BASELINE
    assert os.path.isfile(os.path.join(validated.uri, "schema.pbtxt"))
    with open(outputs["drift_report"][0].uri) as f:
        report = f.read()
    assert "No model is served yet" in report and "| company | fraction present |" in report


def _served_version_without_lineage(tmp_path) -> str:
    version_dir = tmp_path / "serving" / "m" / "7"
    (version_dir / "assets.extra").mkdir(parents=True)
    (version_dir / "saved_model.pb").write_bytes(b"")
    (version_dir / "assets.extra" / "push_manifest.json").write_text(
        json.dumps({"model_uri": "/nowhere/model", "model_artifact_id": 5})
    )
    return str(tmp_path / "serving" / "m")


def test_gate_stops_when_a_model_is_served_but_its_data_cannot_be_found(tmp_path) -> None:
    inputs, outputs = _gate_artifacts(tmp_path, _sample())
    model_dir = _served_version_without_lineage(tmp_path)
    with pytest.raises(executor.BaselineUnavailableError, match="no ML-Metadata connection"):
        executor.Executor().Do(
            inputs, outputs, {"model_dir": model_dir, "metadata_connection": "", "policy": "fail"}
        )


def test_gate_with_policy_warn_records_an_unavailable_baseline_and_passes(tmp_path) -> None:
    inputs, outputs = _gate_artifacts(tmp_path, _sample())
    model_dir = _served_version_without_lineage(tmp_path)
    store_path = str(tmp_path / "empty.sqlite")
    mlmd.open_store(mlmd.sqlite_config(store_path, writable=True))  # An empty but real store.
    config = mlmd.sqlite_config(store_path)
    executor.Executor().Do(
        inputs,
        outputs,
        {
            "model_dir": model_dir,
            "metadata_connection": lineage_graph.encode_connection(config),
            "policy": "warn",
        },
    )
    validated = outputs["validated_schema"][0]
    assert (
        validated.get_string_custom_property(executor.OUTCOME_PROPERTY)
        == executor.BASELINE_UNAVAILABLE
    )
    with open(outputs["drift_report"][0].uri) as f:
        assert "no model artifact with id 5" in f.read()


def test_on_kfp_the_gate_reads_kfp_metadata_grpc_service_from_the_config() -> None:
    from pipeline.config import ConfigError
    from runners.kubeflow import compiler
    from runners.kubeflow.config import load_kubeflow_config

    config = load_kubeflow_config(None, ["metadata_grpc_host=mlmd.ops", "metadata_grpc_port=9090"])
    by_id = {c.id: c for c in compiler.build_tfx_pipeline(config).components}
    connection = json.loads(by_id["DriftGate"].exec_properties["metadata_connection"])
    assert connection == {"client_config": {"host": "mlmd.ops", "port": "9090"}}
    assert load_kubeflow_config().metadata_grpc_host == "metadata-grpc-service.kubeflow"
    with pytest.raises(ConfigError, match="metadata_grpc_port"):
        load_kubeflow_config(None, ["metadata_grpc_port=0"])


def _kfp_like_store(path: str) -> metadata_store.MetadataStore:
    return mlmd.open_store(mlmd.sqlite_config(path, writable=True))


@pytest.mark.parametrize("materialized", [False, True], ids=["trainer-reads-examples", "older"])
def test_the_walk_reads_a_store_written_the_way_kfps_launcher_writes_it(
    tmp_path, materialized: bool
) -> None:
    # KFP's launcher records one execution per task, with INPUT and OUTPUT events keyed by the
    # task's input and output names (backend/src/v2/metadata/client.go, eventPath), object-store
    # URIs, and no TFX node contexts; TFX's container gives the Pusher a hash as model id.
    # `materialized`: a run recorded before Transform stopped materializing, where the Trainer
    # read Transform's transformed examples rather than ExampleGen's.
    store = _kfp_like_store(str(tmp_path / "kfp-mlmd.sqlite"))
    execution_type = store.put_execution_type(
        metadata_store_pb2.ExecutionType(name="system.ContainerExecution")
    )
    root = "minio://mlpipeline/v2/artifacts/chicago-taxi/run-1"

    def artifact(type_name: str, uri: str) -> int:
        type_id = store.put_artifact_type(metadata_store_pb2.ArtifactType(name=type_name))
        [artifact_id] = store.put_artifacts([metadata_store_pb2.Artifact(type_id=type_id, uri=uri)])
        return artifact_id

    def task(inputs: dict[str, int], outputs: dict[str, int]) -> None:
        [execution_id] = store.put_executions(
            [metadata_store_pb2.Execution(type_id=execution_type)]
        )
        events = []
        for kind, by_key in (
            (metadata_store_pb2.Event.INPUT, inputs),
            (metadata_store_pb2.Event.OUTPUT, outputs),
        ):
            for key, artifact_id in by_key.items():
                event = metadata_store_pb2.Event(
                    artifact_id=artifact_id, execution_id=execution_id, type=kind
                )
                event.path.steps.add().key = key
                events.append(event)
        store.put_events(events)

    examples = artifact("tfx.Examples", f"{root}/ExampleGen/a1/examples")
    statistics = artifact("tfx.ExampleStatistics", f"{root}/StatisticsGen/b2/statistics")
    schema = artifact("tfx.Schema", f"{root}/DriftGate/c3/validated_schema")
    graph = artifact("tfx.TransformGraph", f"{root}/Transform/d4/transform_graph")
    model = artifact("tfx.Model", f"{root}/Trainer/e5/model")
    task({}, {"examples": examples})
    task({"examples": examples}, {"statistics": statistics})
    if materialized:
        transformed = artifact("tfx.Examples", f"{root}/Transform/d4/transformed_examples")
        transform_outputs = {"transform_graph": graph, "transformed_examples": transformed}
        task({"examples": examples, "schema": schema}, transform_outputs)
        trainer_examples = transformed
    else:
        task({"examples": examples, "schema": schema}, {"transform_graph": graph})
        trainer_examples = examples
    trainer_inputs = {"examples": trainer_examples, "transform_graph": graph, "schema": schema}
    task(trainer_inputs, {"model": model})

    model_dir = str(tmp_path / "serving" / "chicago_taxi")
    version_dir = os.path.join(model_dir, "1795000000")
    os.makedirs(os.path.join(version_dir, "assets.extra"))
    open(os.path.join(version_dir, "saved_model.pb"), "wb").close()
    with open(os.path.join(version_dir, "assets.extra", "push_manifest.json"), "w") as f:
        # What the Pusher sees on KFP: the launcher's mount path and a hashed id.
        json.dump(
            {"model_uri": "/minio/" + _model_uri_tail(root), "model_artifact_id": 7_123_456_789}, f
        )
    # The gate of the run that trained the model kept a readable copy (minio:// is not).
    copy = executor.baseline_copy_path(model_dir, f"{root}/StatisticsGen/b2/statistics")
    os.makedirs(os.path.dirname(copy))
    with open(copy, "wb") as f:
        f.write(_stats(_sample()).SerializeToString())
    connection = mlmd.sqlite_config(str(tmp_path / "kfp-mlmd.sqlite"))
    found, uri = executor.baseline_statistics(
        lineage_graph.encode_connection(connection), model_dir, 1795000000
    )
    assert uri == f"{root}/StatisticsGen/b2/statistics"
    assert found.datasets[0].num_examples == 300
    # The step that keeps the copy sees the mount path; the key is the recorded URI.
    assert executor.baseline_copy_path(model_dir, "/minio/" + uri[len("minio://") :]) == copy
    os.remove(copy)
    with pytest.raises(lineage_graph.LineageError, match="not readable from this step"):
        executor.baseline_statistics(
            lineage_graph.encode_connection(connection), model_dir, 1795000000
        )


def _model_uri_tail(root: str) -> str:
    return f"{root}/Trainer/e5/model"[len("minio://") :]


def test_kfp_mount_paths_map_back_to_object_store_uris() -> None:
    assert lineage_graph.uri_candidates("/minio/mlpipeline/v2/x/model") == [
        "/minio/mlpipeline/v2/x/model",
        "minio://mlpipeline/v2/x/model",
    ]
    assert lineage_graph.uri_candidates("/gcs/b/m")[1] == "gs://b/m"


def _drift_outcomes(metadata_path: str) -> list[str]:
    """DriftGate outcomes recorded in MLMD, oldest first."""
    store = mlmd.open_store(metadata_path)
    return [
        a.custom_properties[executor.OUTCOME_PROPERTY].string_value
        for a in sorted(store.get_artifacts_by_type("Schema"), key=lambda a: a.id)
        if executor.OUTCOME_PROPERTY in a.custom_properties
    ]


@pytest.mark.slow
def test_first_push_has_no_baseline_and_a_resample_passes_the_gate(production) -> None:
    first, second = production.first, production.second
    assert first.push_outcome == "pushed" and second.push_outcome == "pushed", (
        first.failed_thresholds,
        second.failed_thresholds,
    )
    assert second.node_states["DriftGate"] == "complete"
    assert second.data_version != first.data_version
    assert _drift_outcomes(os.path.abspath(production.config.metadata_path)) == [
        executor.NO_BASELINE,
        executor.PASSED,
    ]
    root = production.config.pipeline_root
    reports = glob.glob(os.path.join(root, "DriftGate", "drift_report", "*", "value"))
    assert len(reports) == 2
    newest = max(reports, key=os.path.getmtime)
    with open(newest) as f:
        report = f.read()
    assert f"served version {first.pushed_version}" in report
    assert "| fare | Jensen-Shannon divergence |" in report and "**STOP**" not in report


def _altered_run(production, name: str, change) -> tuple[Exception, summary.RunSummary]:
    _, rows = conftest.sample_rows()
    source = conftest.write_source(
        os.path.join(production.sources, name), [change(dict(r)) for r in rows[1::2]]
    )
    config = conftest.production_config(production.output_dir, source)
    versions = model_contract.list_versions(tf.io.gfile, config.model_dir)
    with pytest.raises(Exception) as error:
        local_runner.run_local(config)
    stopped = conftest.latest_summary(config)
    assert not {"Transform", "Trainer", "Evaluator", "Pusher"} & set(stopped.node_states)
    assert model_contract.list_versions(tf.io.gfile, config.model_dir) == versions
    return error.value, stopped


@pytest.mark.slow
def test_a_vanished_column_stops_the_run_naming_the_feature(production) -> None:
    error, stopped = _altered_run(
        production, "no-company", lambda r: {k: v for k, v in r.items() if k != "company"}
    )
    # The presence floor (schema presence.min_fraction) fails validation first.
    assert "feature 'company'" in str(error)
    assert stopped.node_states["AnomaliesGate"] == "failed"


@pytest.mark.slow
def test_a_unit_change_stops_the_run_at_the_drift_gate_naming_the_feature(production) -> None:
    def fare_in_thousandths(row: dict[str, str]) -> dict[str, str]:
        return {**row, "fare": f"{float(row['fare']) * 1000:.2f}"}

    error, stopped = _altered_run(production, "fare-x1000", fare_in_thousandths)
    # Every value is still inside the schema's domain: only the drift gate sees it.
    assert stopped.node_states["AnomaliesGate"] == "complete"
    assert stopped.node_states["DriftGate"] == "failed"
    message = str(error)
    assert "feature 'fare': Jensen-Shannon divergence" in message
    assert "> threshold 0.5" in message
    assert f"served version {production.second.pushed_version}" in message


@pytest.mark.slow
def test_miles_to_km_stops_the_run_at_the_drift_gate_naming_feature_and_measure(production) -> None:
    def trip_km(row: dict[str, str]) -> dict[str, str]:
        return {**row, "trip_miles": f"{float(row['trip_miles']) * 1.609344:.4f}"}

    error, stopped = _altered_run(production, "trip-miles-km", trip_km)
    assert stopped.node_states["AnomaliesGate"] == "complete"
    assert stopped.node_states["DriftGate"] == "failed"
    message = str(error)
    assert "feature 'trip_miles': Wasserstein distance / IQR" in message
    # The histogram comparator alone lets it through (README: 0.099 against 0.5).
    assert "feature 'trip_miles': Jensen-Shannon" not in message
    assert "feature 'fare'" not in message


@pytest.mark.slow
def test_nan_labels_and_non_finite_fares_stop_the_run_at_the_anomalies_gate(tmp_path) -> None:
    # No served model needed: the schema gate stops the first run already.
    rng = random.Random(0)
    rows = []
    for row in conftest.sample_rows()[1][1::2]:
        if rng.random() < 0.05:  # 5% of the label source
            row = {**row, "tips": "nan"}
        if rng.random() < 0.1:  # 10% of fares, half NaN, half infinite
            row = {**row, "fare": rng.choice(["NaN", "inf"])}
        rows.append(row)
    source = conftest.write_source(str(tmp_path / "non-finite"), rows)
    config = conftest.production_config(str(tmp_path / "out"), source)
    with pytest.raises(Exception) as error:
        local_runner.run_local(config)
    stopped = conftest.latest_summary(config)
    assert stopped.node_states["AnomaliesGate"] == "failed"
    assert not {"Transform", "Trainer", "Evaluator", "Pusher"} & set(stopped.node_states)
    message = str(error.value)
    assert "feature 'tips': Invalid values (Float feature has NaN values.)" in message
    assert "feature 'fare'" in message and "Float feature has Inf values." in message
