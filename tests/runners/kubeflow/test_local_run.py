"""The compiled spec runs on the emulated open-source KFP v2 backend, to a blessed, pushed model.

Three runs against one backend state (object store, ML-Metadata, cache), as on a cluster:
1. a backend before 2.14 (executions keyed by display name), fresh: every task runs; DriftGate
   finds no served model;
2. a 2.14+ backend, the source data changed: everything from the data step on runs again
   (only the schema import, which does not read the data, comes from the cache); DriftGate
   follows the served model's lineage through the ML-Metadata the backend recorded in run 1
   and compares against those statistics;
3. the same source again: served from the cache except the tasks that read state outside their
   inputs (the fingerprint task, LatestPushedModel, Pusher) and the Evaluator, whose baseline
   input is LatestPushedModel's fresh output.
"""

import csv
import json
import os

import pytest

from devtools.kfp_backend.backend import POD_METADATA_PATH, Backend, RunResult
from devtools.kfp_backend.objectstore import ObjectStore
from runners.kubeflow import compiler
from runners.kubeflow import spec as spec_lib
from runners.kubeflow.config import load_kubeflow_config
from tests.runners.kubeflow.conftest import EXAMPLE_CONFIG, REPO

pytestmark = pytest.mark.slow

TASKS = [
    "DataPrep", "DriftGate", "Evaluator", "ExampleGen", "ExampleValidator", "AnomaliesGate",
    "LatestPushedModel", "LoadTest", "Pusher", "SchemaImporter", "SourceFingerprint",
    "StatisticsGen", "Trainer", "Transform",
]  # fmt: skip
ALWAYS_RUN = {"SourceFingerprint", "LatestPushedModel", "Pusher"}


def _write_source(directory: str, rows: int) -> str:
    """Writes the first `rows` rows of the project's source CSV as a one-file source."""
    # Imported here: DataPrep arrives with the new DAG (kfp-dag branch).
    from components.data_prep.source import default_source, list_source_files

    (source_file,) = list_source_files(default_source())[:1]
    os.makedirs(directory, exist_ok=True)
    with (
        open(source_file, newline="") as f,
        open(os.path.join(directory, "data.csv"), "w", newline="") as out,
    ):
        reader = csv.reader(f)
        writer = csv.writer(out)
        writer.writerow(next(reader))
        for _, row in zip(range(rows), reader, strict=False):
            writer.writerow(row)
    return directory


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("kfp")
    serving = tmp / "serving"
    config = load_kubeflow_config(
        EXAMPLE_CONFIG,
        [
            # Paths the steps see (a PVC on a cluster); artifacts go through the object store.
            "source_uri=/nonexistent/overridden/by/the/run/parameter",
            f"schema_path={os.path.join(REPO, 'schemas', 'taxi', 'schema.pbtxt')}",
            f"serving_base={serving}",
            "settings.train_steps=20",
            "settings.eval_steps=5",
            "settings.hyperparameters.epochs=1",
            # A few hundred rows trained for 20 steps: blessing must not hinge on model quality.
            "settings.evaluation.min_auc=0",
            "settings.evaluation.min_auc_credit_card=0",
            "settings.evaluation.max_auc_drop=1",
            # Latency bounds are test_load_test.py's concern: a busy shared machine must not
            # decide whether these runs push.
            "settings.load_test.max_p99_ms=10000",
            # No gRPC ML-Metadata service here: DriftGate reads the backend's store, bound
            # into every step at this path.
            f"emulated_metadata_sqlite={POD_METADATA_PATH}",
        ],
    )
    docs = spec_lib.parse(spec_lib.render(compiler.compile_pipeline(config)))
    source = str(tmp / "source")
    state = str(tmp / "backend")
    result = {"config": config, "serving": serving, "store": ObjectStore(f"{state}/objectstore")}
    _write_source(source, 300)
    result["first"] = Backend(state, version="2.13.0").run(
        docs, arguments={"source_uri": source}, run_id="run-1"
    )
    _write_source(source, 360)
    newer = Backend(state, version="2.14.0")
    result["changed"] = newer.run(docs, arguments={"source_uri": source}, run_id="run-2")
    result["unchanged"] = newer.run(docs, arguments={"source_uri": source}, run_id="run-3")
    return result


def _assert_blessed_and_pushed(run: RunResult, runs: dict, outcomes: tuple[str, ...]) -> None:
    blessing = run.tasks["Evaluator"].outputs["blessing"]
    # Through MLMD: the int property comes back as a double.
    assert blessing["metadata"]["blessed"] == 1.0
    assert blessing["metadata"]["current_model"] == run.tasks["Trainer"].outputs["model"]["uri"]
    pushed = run.tasks["Pusher"].outputs["pushed_model"]["metadata"]
    assert pushed["push_outcome"] in outcomes
    serving = runs["serving"] / runs["config"].settings.model_name
    versions = sorted(os.listdir(serving), key=lambda v: int(v) if v.isdigit() else -1)
    assert os.path.isfile(serving / versions[-1] / "saved_model.pb")


def test_first_run_executes_every_task_and_pushes(runs):
    first = runs["first"]
    assert sorted(first.tasks) == sorted(TASKS)
    assert set(first.states().values()) == {"COMPLETE"}
    # Before 2.14 executions are named by display name: the compiler keeps them = task keys.
    assert all(t.task_name == n for n, t in first.tasks.items())
    prepared = first.tasks["DataPrep"].outputs["prepared_data"]
    assert prepared["metadata"]["train_rows"] + prepared["metadata"]["eval_rows"] == 300
    examples = first.tasks["ExampleGen"].outputs["examples"]
    assert json.loads(examples["metadata"]["split_names"]) == ["train", "eval"]
    model_uri = first.tasks["Trainer"].outputs["model"]["uri"]
    assert model_uri.startswith("minio://mlpipeline/v2/artifacts/chicago-taxi/run-1/Trainer/")
    assert os.path.isfile(
        os.path.join(runs["store"].path(model_uri), "Format-Serving", "saved_model.pb")
    )
    for task in first.tasks.values():
        assert "executor-logs" in task.outputs, task.name
    gate = first.tasks["DriftGate"].outputs["validated_schema"]["metadata"]
    assert gate["drift_outcome"] == "no_baseline"
    _assert_blessed_and_pushed(first, runs, ("pushed",))


def test_changed_source_runs_again_from_the_data_step(runs):
    changed = runs["changed"]
    assert changed.states() == {
        **{name: "COMPLETE" for name in TASKS},
        "SchemaImporter": "CACHED",  # Reads no data: its key did not change.
    }
    assert (
        changed.tasks["SourceFingerprint"].parameters["fingerprint"]
        != runs["first"].tasks["SourceFingerprint"].parameters["fingerprint"]
    )
    prepared = changed.tasks["DataPrep"].outputs["prepared_data"]["metadata"]
    assert prepared["train_rows"] + prepared["eval_rows"] == 360
    # The baseline was found by walking the ML-Metadata the backend recorded in run 1: the
    # served model -> Trainer -> Transform -> Examples -> StatisticsGen's statistics.
    gate = changed.tasks["DriftGate"].outputs["validated_schema"]["metadata"]
    assert gate["drift_outcome"] == "passed"
    first_statistics = runs["first"].tasks["StatisticsGen"].outputs["statistics"]["uri"]
    assert gate["drift_baseline_statistics"] == first_statistics
    _assert_blessed_and_pushed(changed, runs, ("pushed",))


def test_unchanged_source_is_served_from_the_cache(runs):
    unchanged, changed = runs["unchanged"], runs["changed"]
    executed = {n for n, s in unchanged.states().items() if s == "COMPLETE"}
    # LoadTest follows: its input is the re-run Evaluator's new blessing.
    assert executed == ALWAYS_RUN | {"Evaluator", "LoadTest"}
    assert unchanged.tasks["Trainer"].outputs["model"] == changed.tasks["Trainer"].outputs["model"]
    # The model pushed by run 2 is the one this run evaluates: already in serving.
    _assert_blessed_and_pushed(unchanged, runs, ("pushed", "already_serving"))
