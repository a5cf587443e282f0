"""`lineage`: the served version's full chain from MLMD, its data's models, and after a rollback."""

import json
import os

import pytest
import tensorflow as tf

import model_contract
from commands import cli
from metadata import store as mlmd
from operations import lineage, summary


def _cli(production, capsys, *args: str) -> tuple[int, str]:
    code = cli.main(["lineage", "--set", f"output_dir={production.output_dir}", *args])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def _store(production):
    return mlmd.open_store(os.path.abspath(production.config.metadata_path))


@pytest.mark.slow
def test_lineage_of_the_served_version_has_the_whole_chain(production, capsys) -> None:
    second = production.second
    code, out = _cli(production, capsys, "--json")
    assert code == 0, out
    found = json.loads(out)
    assert found["version"] == int(second.pushed_version) and found["status"] == lineage.SERVED
    assert found["pipeline_run_id"] == second.run_id
    assert found["pushed_at"]
    manifest = model_contract.read_manifest(tf.io.gfile, found["version_dir"])
    assert found["model"]["uri"] == manifest["model_uri"]
    assert found["model"]["artifact_id"] == manifest["model_artifact_id"]
    assert found["blessing"]["blessed"] is True
    assert found["metrics"]["overall"]["auc"] == pytest.approx(second.metrics_overall["auc"])
    assert found["trainer"]["node"] == "Trainer" and found["trainer"]["state"] == "complete"
    assert found["transform"]["node"] == "Transform"
    assert len(found["schema"]["sha256"]) == 64
    assert found["drift_gate"] == {
        "outcome": "passed",
        "baseline_version": production.first.pushed_version,
    }
    data = found["data"]
    assert data["data_version"] == second.data_version
    assert data["train_rows"] == second.data_rows["train"]
    assert data["eval_rows"] == second.data_rows["eval"]
    assert [os.path.basename(f["path"]) for f in data["source_files"]] == ["data.csv"]
    assert all(len(f["sha256"]) == 64 for f in data["source_files"])
    assert data["source_uri"].endswith("odd")
    # The sample's newest training trip is years old.
    assert data["newest_training_row_age_days"] > 365
    assert found["code"]["package_version"] == "0.1.0"
    assert "git_commit" in found["code"]


@pytest.mark.slow
def test_lineage_text_names_every_link(production, capsys) -> None:
    code, out = _cli(production, capsys)
    assert code == 0, out
    second = production.second
    for expected in [
        f"version {second.pushed_version}: served",
        f"pipeline run: {second.run_id}",
        "blessing: blessed",
        "metrics overall:     auc=",
        "trainer: execution",
        "transform: execution",
        "schema: sha256 ",
        f"drift gate: passed against version {production.first.pushed_version}",
        f"data: version {second.data_version}",
        "freshness: newest training row",
        "code: package_version 0.1.0",
    ]:
        assert expected in out, (expected, out)


@pytest.mark.slow
def test_lineage_of_a_data_version_lists_the_models_trained_on_it(production, capsys) -> None:
    first = production.first
    code, out = _cli(production, capsys, "--data", first.data_version, "--json")
    assert code == 0, out
    found = json.loads(out)
    assert len(found["models"]) == 1
    [model] = found["models"]
    assert [p["version"] for p in model["pushed_versions"]] == [int(first.pushed_version)]
    code, out = _cli(production, capsys, "--data", "no-such-data")
    assert code == 1 and "No run prepared data version 'no-such-data'" in out


@pytest.mark.slow
def test_lineage_follows_a_rollback(production, capsys) -> None:
    first, second = production.first, production.second
    model_dir = production.config.model_dir
    assert model_contract.roll_back(tf.io.gfile, model_dir) == [int(second.pushed_version)]
    served = lineage.version_lineage(_store(production), model_dir)
    assert served["version"] == int(first.pushed_version) and served["status"] == lineage.SERVED
    assert served["data"]["data_version"] == first.data_version
    assert served["drift_gate"]["outcome"] == "no_baseline"
    # The withdrawn version keeps its lineage, marked as rolled back.
    withdrawn = lineage.version_lineage(_store(production), model_dir, int(second.pushed_version))
    assert withdrawn["status"] == lineage.ROLLED_BACK
    assert withdrawn["data"]["data_version"] == second.data_version
    code, out = _cli(production, capsys, "--version", "12345")
    assert code == 1 and "Version 12345 is not in" in out and "(rolled back)" in out


def test_freshness_is_the_age_of_the_newest_training_row() -> None:
    run = summary.RunSummary(
        run_id="r",
        node_states={},
        data_version="abc",
        data_time_ranges={"train": (1_000_000, 1_086_400), "eval": (1_086_500, 1_090_000)},
    )
    assert summary.freshness_lines(run, now=1_086_400 + 3 * 86400) == [
        "  freshness: newest training row 3.0 days old (1970-01-13 13:46 UTC)"
    ]
    assert summary.freshness_lines(summary.RunSummary(run_id="r", node_states={})) == []


def test_version_dirs_tell_served_older_and_rolled_back_versions(tmp_path) -> None:
    for name in ("100", "200", "_rolled_back_300", ".tmp-400-x"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "saved_model.pb").write_bytes(b"")
    found = lineage.version_dirs(str(tmp_path))
    assert {v: status for v, (_, status) in found.items()} == {
        100: lineage.NOT_SERVED,
        200: lineage.SERVED,
        300: lineage.ROLLED_BACK,
    }
    with pytest.raises(lineage.LineageNotFoundError, match=r"300 \(rolled back\)"):
        lineage.version_lineage(mlmd.open_store(_empty_store(tmp_path)), str(tmp_path), 5)


def _empty_store(tmp_path) -> str:
    path = str(tmp_path / "mlmd.sqlite")
    mlmd.open_store(mlmd.sqlite_config(path, writable=True))
    return path
