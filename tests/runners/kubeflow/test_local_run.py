"""The compiled spec runs on the emulated open-source KFP v2 backend, to a blessed, pushed model.

Five runs against one backend state (object store, ML-Metadata, cache), as on a cluster; the
two always-run tasks (SourceFingerprint, ServedModel) run every time, and which other steps
run follows from KFP's cache key alone:
1. fresh, on a backend before 2.14 (executions keyed by display name): every task runs;
   DriftGate finds no served model;
2. changed source data, 2.14+ backend: everything from the data step on runs again (only the
   schema import, which does not read the data, comes from the cache); DriftGate follows the
   served model's lineage through the ML-Metadata the backend recorded in run 1;
3. the same data after run 2's push: the served model changed, so LatestPushedModel, the
   Evaluator, LoadTest, DriftGate and the Pusher run again against it; the data steps and the
   Trainer come from the cache;
4. the same data, the same served model: every other step comes from the cache, the
   Evaluator included;
5. the same data after a rollback to run 1's version: the comparing steps run again, against
   the rolled-back model and the data that trained it.
"""

import csv
import json
import os

import pytest

import model_contract
from devtools.kfp_backend.backend import POD_METADATA_PATH, Backend, RunResult
from devtools.kfp_backend.objectstore import ObjectStore
from runners.kubeflow import compiler
from runners.kubeflow import spec as spec_lib
from runners.kubeflow.config import load_kubeflow_config
from tests.runners.kubeflow.conftest import EXAMPLE_CONFIG, REPO

pytestmark = pytest.mark.slow

TASKS = [
    "DataPrep", "DriftGate", "Evaluator", "ExampleGen", "ExampleValidator", "AnomaliesGate",
    "LatestPushedModel", "LoadTest", "Pusher", "SchemaImporter", "ServedModel",
    "SourceFingerprint", "StatisticsGen", "Trainer", "Transform",
]  # fmt: skip
ALWAYS_RUN = {"SourceFingerprint", "ServedModel"}
# The steps that compare with the served model, directly (LatestPushedModel, DriftGate) or
# through LatestPushedModel's baseline artifact (Evaluator, then LoadTest and Pusher).
COMPARING = {"LatestPushedModel", "DriftGate", "Evaluator", "LoadTest", "Pusher"}


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
    result["after_push"] = newer.run(docs, arguments={"source_uri": source}, run_id="run-3")
    result["unchanged"] = newer.run(docs, arguments={"source_uri": source}, run_id="run-4")
    model_dir = str(serving / config.settings.model_name)
    result["rolled_back"] = model_contract.roll_back(model_contract.LocalFileSystem(), model_dir)
    result["after_rollback"] = newer.run(docs, arguments={"source_uri": source}, run_id="run-5")
    return result


def _executed(run: RunResult) -> set[str]:
    return {name for name, state in run.states().items() if state == "COMPLETE"}


def _pushed_version(run: RunResult) -> int:
    return int(run.tasks["Pusher"].outputs["pushed_model"]["metadata"]["pushed_version"])


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


def test_same_data_after_a_push_compares_again_with_the_new_served_model(runs):
    after_push, changed = runs["after_push"], runs["changed"]
    assert after_push.states() == {
        name: "COMPLETE" if name in ALWAYS_RUN | COMPARING else "CACHED" for name in TASKS
    }
    served = after_push.tasks["ServedModel"].parameters["served_model"]
    assert served != changed.tasks["ServedModel"].parameters["served_model"]
    assert served.startswith(f"version={_pushed_version(changed)} manifest=sha256:")
    baseline = after_push.tasks["LatestPushedModel"].outputs["baseline_model"]["metadata"]
    assert baseline["baseline_version"] == str(_pushed_version(changed))
    gate = after_push.tasks["DriftGate"].outputs["validated_schema"]["metadata"]
    assert gate["drift_baseline_version"] == str(_pushed_version(changed))
    assert (
        gate["drift_baseline_statistics"]
        == changed.tasks["StatisticsGen"].outputs["statistics"]["uri"]
    )
    # The candidate is the model already served: nothing new is written.
    _assert_blessed_and_pushed(after_push, runs, ("already_serving",))


def test_unchanged_data_and_served_model_is_served_from_the_cache(runs):
    unchanged, after_push = runs["unchanged"], runs["after_push"]
    assert _executed(unchanged) == ALWAYS_RUN
    assert unchanged.tasks["Evaluator"].state == "CACHED"
    assert (
        unchanged.tasks["ServedModel"].parameters["served_model"]
        == after_push.tasks["ServedModel"].parameters["served_model"]
    )
    for name in ("Trainer", "Evaluator", "Pusher"):
        assert unchanged.tasks[name].outputs == after_push.tasks[name].outputs, name


def test_after_a_rollback_the_same_data_is_compared_with_the_rolled_back_model(runs):
    after_rollback, first, changed = runs["after_rollback"], runs["first"], runs["changed"]
    assert runs["rolled_back"] == [_pushed_version(changed)]
    assert _executed(after_rollback) == ALWAYS_RUN | COMPARING
    served = after_rollback.tasks["ServedModel"].parameters["served_model"]
    assert served.startswith(f"version={_pushed_version(first)} manifest=sha256:")
    assert served.endswith(f" withdrawn={_pushed_version(changed)}")
    baseline = after_rollback.tasks["LatestPushedModel"].outputs["baseline_model"]["metadata"]
    assert baseline["baseline_version"] == str(_pushed_version(first))
    # The Evaluator compared the same candidate with the rolled-back model.
    blessing = after_rollback.tasks["Evaluator"].outputs["blessing"]["metadata"]
    assert (
        blessing["baseline_model"]
        == after_rollback.tasks["LatestPushedModel"].outputs["baseline_model"]["uri"]
    )
    gate = after_rollback.tasks["DriftGate"].outputs["validated_schema"]["metadata"]
    assert gate["drift_baseline_version"] == str(_pushed_version(first))
    assert (
        gate["drift_baseline_statistics"]
        == first.tasks["StatisticsGen"].outputs["statistics"]["uri"]
    )
