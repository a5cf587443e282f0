"""The served model's identity (what the comparing steps are cached on), LatestPushedModel's
check of it, and the retention of DriftGate's statistics copies."""

import json
import os

import pandas as pd
import pytest
import tensorflow as tf
import tensorflow_data_validation as tfdv
from tfx.types import standard_artifacts

import model_contract
import schemas
from components import ui_artifacts
from components.data_prep import source as source_lib
from components.drift_gate import drift, retention
from components.drift_gate import executor as drift_gate
from components.latest_pushed_model import executor as baseline
from components.latest_pushed_model import served

FS = model_contract.LocalFileSystem()


def _version(model_dir, version: int, model_uri: str) -> None:
    path = model_dir / str(version)
    (path / "assets.extra").mkdir(parents=True)
    (path / "saved_model.pb").write_bytes(b"graph")
    (path / "assets.extra" / "push_manifest.json").write_text(json.dumps({"model_uri": model_uri}))


def test_identity_names_the_served_version_its_manifest_and_rollbacks(tmp_path) -> None:
    model_dir = tmp_path / "m"
    assert served.served_model_identity(FS, str(model_dir)) == "none"
    _version(model_dir, 100, "/models/a")
    first = served.served_model_identity(FS, str(model_dir))
    assert first.startswith("version=100 manifest=sha256:") and "withdrawn" not in first
    _version(model_dir, 200, "/models/b")
    pushed = served.served_model_identity(FS, str(model_dir))
    assert pushed.startswith("version=200 manifest=sha256:")
    # Back to version 100 by a rollback: not the identity it had before version 200 existed.
    assert model_contract.roll_back(FS, str(model_dir)) == [200]
    rolled_back = served.served_model_identity(FS, str(model_dir))
    assert rolled_back == first + " withdrawn=200"
    # Retention, staging copies and incomplete versions change nothing.
    (model_dir / ".tmp-300-abc").mkdir()
    (model_dir / "400").mkdir()
    assert served.served_model_identity(FS, str(model_dir)) == rolled_back
    # The same number with other content is another model.
    (model_dir / "100" / "assets.extra" / "push_manifest.json").write_text('{"model_uri": "x"}')
    assert served.served_model_identity(FS, str(model_dir)) != rolled_back


def test_a_version_copied_by_hand_is_identified_by_its_graph(tmp_path) -> None:
    (tmp_path / "m" / "5").mkdir(parents=True)
    (tmp_path / "m" / "5" / "saved_model.pb").write_bytes(b"graph")
    identity = served.served_model_identity(tf.io.gfile, str(tmp_path / "m"))
    assert identity.startswith("version=5 saved_model=sha256:")


def test_latest_pushed_model_refuses_a_served_model_changed_since_the_run_started(
    tmp_path,
) -> None:
    model_dir = tmp_path / "m"
    _version(model_dir, 100, "/models/a")
    at_start = served.served_model_identity(FS, str(model_dir))
    _version(model_dir, 200, "/models/b")  # Pushed by another run meanwhile.
    out = standard_artifacts.Model()
    out.uri = str(tmp_path / "out")
    with pytest.raises(served.ServedModelChangedError) as error:
        baseline.Executor().Do(
            {baseline.CANDIDATE_MODEL_KEY: [standard_artifacts.Model()]},
            {baseline.BASELINE_MODEL_KEY: [out]},
            {baseline.MODEL_DIR_KEY: str(model_dir), baseline.SERVED_MODEL_KEY: at_start},
        )
    assert f"at the start: {at_start!r}" in str(error.value)
    assert "now: 'version=200 manifest=sha256:" in str(error.value)
    assert not os.path.exists(out.uri)


def _copy(root, key: str, mtime: int) -> str:
    path = root / key / "Split-train" / "FeatureStats.pb"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"stats")
    os.utime(path, (mtime, mtime))
    return str(root / key)


def test_retention_keeps_the_newest_copies_and_every_protected_one(tmp_path) -> None:
    root = tmp_path / ".drift_baselines"
    assert retention.retire_baseline_copies(str(root), keep=2) == []
    oldest = _copy(root, "a", 1_000)
    old = _copy(root, "b", 2_000)
    newer = _copy(root, "c", 3_000)
    newest = _copy(root, "d", 4_000)
    retired = retention.retire_baseline_copies(str(root), keep=2, protect=[oldest])
    assert retired == [old]
    assert sorted(os.listdir(root)) == ["a", "c", "d"]
    assert {newer, newest} <= {str(root / k) for k in os.listdir(root)}
    with pytest.raises(ValueError, match="keep must be >= 1"):
        retention.retire_baseline_copies(str(root), keep=0)


def test_the_gate_applies_retention_after_keeping_its_copy(tmp_path) -> None:
    frame = pd.read_csv(os.path.join(source_lib.default_source(), "data.csv"), nrows=200)
    statistics = standard_artifacts.ExampleStatistics()
    statistics.uri = str(tmp_path / "statistics")
    os.makedirs(os.path.join(statistics.uri, "Split-train"))
    stats = tfdv.generate_statistics_from_dataframe(frame, drift.stats_options())
    with open(os.path.join(statistics.uri, "Split-train", "FeatureStats.pb"), "wb") as f:
        f.write(stats.SerializeToString())
    schema = standard_artifacts.Schema()
    schema.uri = os.path.dirname(schemas.schema_path("taxi"))
    validated = standard_artifacts.Schema()
    validated.uri = str(tmp_path / "validated")
    report = ui_artifacts.Markdown()
    report.uri = str(tmp_path / "report" / "value")
    os.makedirs(os.path.dirname(report.uri))
    model_dir = tmp_path / "serving" / "m"
    root = model_dir / drift_gate.BASELINES_DIR
    stale = [_copy(root, key, 1_000 + i) for i, key in enumerate(("x", "y", "z"))]
    drift_gate.Executor().Do(
        {"statistics": [statistics], "schema": [schema]},
        {"validated_schema": [validated], "drift_report": [report]},
        {
            "model_dir": str(model_dir),
            "metadata_connection": "",
            "policy": "fail",
            "served_model": served.NONE,
            "keep_baselines": 2,
        },
    )
    kept = drift_gate.baseline_copy_path(str(model_dir), statistics.uri)
    assert os.path.isfile(kept)
    remaining = sorted(os.path.join(root, k) for k in os.listdir(root))
    assert remaining == sorted([os.path.dirname(os.path.dirname(kept)), stale[-1]])
