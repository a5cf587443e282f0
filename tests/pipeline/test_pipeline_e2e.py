"""End to end with BeamDagRunner on a small slice: data prepared inside the run, blessed and
pushed, a re-run comparing with the pushed model, a fully cached re-run, a worse model kept out,
new (anomalous) data re-prepared and stopped before training."""

import csv
import os

import pytest
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2

import model_contract
from model import features
from operations import summary
from pipeline import config as config_lib
from pipeline import pipeline as pipeline_lib
from runners import local as local_runner
from tests.support.production import small_run_config

pytestmark = pytest.mark.slow

NODES = set(pipeline_lib.NODE_IDS)
# Cached on the served model's identity, directly or through LatestPushedModel's output.
COMPARING = {"LatestPushedModel", "DriftGate", "Evaluator", "LoadTest", "Pusher"}


def _versions(config) -> list[int]:
    return model_contract.list_versions(tf.io.gfile, config.model_dir)


def _config(output_dir: str, source_data: str | None = None, **settings) -> config_lib.LocalConfig:
    # Small data: the overall bar is real, the Credit Card bar only "better than chance".
    evaluation = {"min_auc": 0.75, "min_auc_credit_card": 0.5}
    return small_run_config(output_dir, source_data, **{"evaluation": evaluation, **settings})


def _run(config: config_lib.LocalConfig) -> tuple[local_runner.LocalRun, summary.RunSummary]:
    run = local_runner.run_local(config)
    return run, summary.summarize_latest_run(
        os.path.abspath(config.metadata_path), config.settings.pipeline_name
    )


@pytest.fixture(scope="module")
def output_dir(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("e2e"))


@pytest.fixture(scope="module")
def first(output_dir):
    config = _config(output_dir)
    run, result = _run(config)
    return config, run, result


@pytest.fixture(scope="module")
def rerun(first):
    config, _, _ = first
    return _run(config)[1]


@pytest.fixture(scope="module")
def settled(first, rerun):
    config, _, _ = first
    return _run(config)[1]


@pytest.fixture(scope="module")
def worse(first, rerun, settled):
    config, _, _ = first
    worse_config = _config(
        config.output_dir,
        train_steps=1,
        hyperparameters={"hidden_units": "1", "learning_rate": 1e-6, "epochs": 1, "seed": 3},
        evaluation={"min_auc": 0.0, "min_auc_credit_card": 0.0, "max_auc_drop": 0.01},
    )
    return _run(worse_config)[1]


def _examples(prepared_data_uri: str, count: int = 5) -> list[bytes]:
    schema = features.load_schema()
    types = {f.name: f.type for f in schema.feature if "SERVING" not in f.not_in_environment}
    out = []
    with open(os.path.join(prepared_data_uri, "eval", "data.csv")) as f:
        for row in list(csv.DictReader(f))[:count]:
            example = tf.train.Example()
            for name, kind in types.items():
                if row[name] == "":
                    continue  # missing stays missing
                feature = example.features.feature[name]
                if kind == 1:  # BYTES
                    feature.bytes_list.value.append(row[name].encode())
                elif kind == 2:  # INT
                    feature.int64_list.value.append(int(float(row[name])))
                else:
                    feature.float_list.value.append(float(row[name]))
            out.append(example.SerializeToString())
    return out


def test_every_component_ran_and_wrote_artifacts(first) -> None:
    config, _, result = first
    assert result.node_states == {node: "complete" for node in NODES}
    root = config.pipeline_root
    for path in [
        "DataPrep/prepared_data/*/train/data.csv",
        "DataPrep/prepared_data/*/eval/data.csv",
        "ExampleGen/examples/*/Split-train/*.gz",
        "ExampleGen/examples/*/Split-eval/*.gz",
        "StatisticsGen/statistics/*/Split-eval/FeatureStats.pb",
        "SchemaImporter/schema/*/schema.pbtxt",
        "ExampleValidator/anomalies/*/Split-train/SchemaDiff.pb",
        "AnomaliesGate/validated_schema/*/schema.pbtxt",
        "Transform/transform_graph/*/transform_fn/saved_model.pb",
        "Trainer/model/*/Format-Serving/saved_model.pb",
        "Trainer/model_run/*/training_summary.json",
        "Trainer/model_run/*/train/events.out.tfevents.*",
        "LatestPushedModel/baseline_model/*/Format-Serving/saved_model.pb",
        "Evaluator/evaluation/*/validations*",
        "Evaluator/blessing/*/BLESSED",
        "LoadTest/blessing/*/INFRA_BLESSED",
        "LoadTest/report/*/value",
        "Pusher/pushed_model/*/saved_model.pb",
        "Pusher/push_report/*/value",
        "AnomaliesGate/anomalies_report/*/value",
        "DriftGate/drift_report/*/value",
        "Evaluator/report/*/value",
    ]:
        assert tf.io.gfile.glob(os.path.join(root, path)), f"missing {path}"
    # The Trainer transforms raw examples as it reads them: no materialized copy of the data.
    assert not tf.io.gfile.glob(os.path.join(root, "Transform", "transformed_examples"))
    # The summary names every report a person reads, and each file is where it says.
    assert len(result.reports) == 5 and all(os.path.isfile(p) for p in result.reports.values())
    total = result.rows_per_split["train"] + result.rows_per_split["eval"]
    assert total == 1500 and result.rows_per_split["eval"] < result.rows_per_split["train"]
    # DataPrep's metadata in MLMD agrees with what StatisticsGen counted downstream.
    assert result.data_rows == result.rows_per_split
    assert result.data_time_ranges["train"][1] < result.data_time_ranges["eval"][0]
    assert result.data_version and result.data_uri
    assert result.anomalies == []


def test_model_is_blessed_on_overall_and_credit_card_and_pushed(first) -> None:
    config, run, result = first
    assert result.blessed, result.failed_thresholds
    assert result.baseline == "none (first push: absolute thresholds only)"
    assert result.metrics_overall["auc"] >= 0.75 and result.metrics_credit_card["auc"] >= 0.5
    assert result.metrics_credit_card["example_count"] < result.metrics_overall["example_count"]
    assert result.load_test and result.load_test.startswith("blessed ("), result.load_test
    assert "0 failed" in result.load_test and "all " in result.load_test
    assert f"  load test: {result.load_test}" in summary.format_summary(result)
    assert result.push_outcome == "pushed"
    assert _versions(config) == [int(result.pushed_version)]
    version_dir = os.path.join(config.model_dir, result.pushed_version)
    assert os.path.isfile(os.path.join(version_dir, "assets.extra", "tf_serving_warmup_requests"))
    manifest = model_contract.read_manifest(tf.io.gfile, version_dir)
    assert manifest["source_fingerprint"] == run.source_fingerprint
    assert manifest["pipeline_run_id"] == result.run_id


def test_pushed_model_scores_serialized_examples(first) -> None:
    config, _, result = first
    version_dir = os.path.join(config.model_dir, result.pushed_version)
    loaded = tf.saved_model.load(version_dir)
    examples = tf.constant(_examples(result.data_uri))
    probabilities = loaded.signatures["serving_default"](examples=examples)["probabilities"].numpy()
    assert probabilities.shape == (5, 1)
    assert ((probabilities >= 0) & (probabilities <= 1)).all()
    classified = loaded.signatures["classify"](inputs=examples)
    assert classified["classes"].numpy()[0].tolist() == [b"0", b"1"]
    tf.debugging.assert_near(classified["scores"][:, 1], probabilities[:, 0])
    tf.debugging.assert_near(
        loaded.signatures["regress"](inputs=examples)["outputs"], probabilities[:, 0]
    )
    saved = saved_model_pb2.SavedModel()
    with open(os.path.join(version_dir, "saved_model.pb"), "rb") as f:
        saved.ParseFromString(f.read())
    methods = {k: v.method_name for k, v in saved.meta_graphs[0].signature_def.items()}
    assert methods["classify"] == "tensorflow/serving/classify"
    assert methods["regress"] == "tensorflow/serving/regress"
    assert methods["serving_default"] == "tensorflow/serving/predict"


def test_rerun_after_the_push_compares_with_the_pushed_model_and_adds_no_version(
    first, rerun
) -> None:
    config, _, result = first
    # Same data, but the served model changed with the first run's push.
    assert rerun.node_states == {
        node: "complete" if node in COMPARING else "cached" for node in NODES
    }
    assert rerun.baseline == f"version {result.pushed_version}"
    assert rerun.push_outcome == "already_serving"
    assert _versions(config) == [int(result.pushed_version)]


def test_rerun_on_unchanged_data_and_served_model_is_cached(first, settled) -> None:
    config, _, result = first
    assert settled.node_states == {node: "cached" for node in NODES}
    assert _versions(config) == [int(result.pushed_version)]


def test_worse_model_than_the_pushed_baseline_is_not_pushed(first, worse) -> None:
    config, _, result = first
    assert worse.node_states["Trainer"] == "complete"
    # Same source and split settings: the data steps come from the cache.
    assert worse.node_states["DataPrep"] == worse.node_states["ExampleGen"] == "cached"
    assert worse.data_version == result.data_version
    assert worse.baseline == f"version {result.pushed_version}"
    assert worse.blessed is False
    assert any("auc change vs baseline on overall" in line for line in worse.failed_thresholds), (
        worse.failed_thresholds
    )
    assert worse.push_outcome == "not_blessed" and worse.pushed_version is None
    assert worse.load_test and worse.load_test.startswith("NOT blessed (0 requests")
    assert "the Evaluator did not bless" in worse.load_test
    assert _versions(config) == [int(result.pushed_version)]


def test_anomalous_data_stops_the_run_before_transform_and_pushes_nothing(
    first, worse, tmp_path
) -> None:
    config, _, result = first
    bad_dir = tmp_path / "bad"
    bad_dir.mkdir()
    with open(os.path.join(result.data_uri, "train", "data.csv")) as f:
        rows = list(csv.DictReader(f))
    for row in rows[-50:]:
        row["payment_type"] = "Bitcoin"
        row["trip_start_hour"] = "99"
    with open(bad_dir / "data.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    bad = _config(config.output_dir, source_data=str(bad_dir), max_rows=None)
    with pytest.raises(
        Exception, match="feature 'payment_type': Unexpected string values"
    ) as error:
        local_runner.run_local(bad)
    assert "feature 'trip_start_hour': Out-of-range values" in str(error.value)
    stopped = summary.summarize_latest_run(
        os.path.abspath(config.metadata_path), config.settings.pipeline_name
    )
    assert stopped.node_states["AnomaliesGate"] == "failed"
    # New source bytes: DataPrep and the steps after it ran again rather than being cached.
    for node in ("DataPrep", "ExampleGen", "StatisticsGen", "ExampleValidator"):
        assert stopped.node_states[node] == "complete", node
    assert stopped.data_version != result.data_version
    assert not {"Transform", "Trainer", "Evaluator", "Pusher"} & set(stopped.node_states)
    assert _versions(config) == [int(result.pushed_version)]
