"""The compiled spec runs: each task executed here as KFP's v2 launcher would, to a push."""

import json
import os

import pytest

from pipeline import data as data_lib
from pipeline.kubeflow_v2 import compiler, launcher
from pipeline.kubeflow_v2 import spec as spec_lib
from pipeline.kubeflow_v2.config import load_kubeflow_config
from tests.kubeflow.conftest import EXAMPLE_CONFIG, REPO


@pytest.mark.slow
def test_compiled_spec_runs_to_a_blessed_pushed_model(tmp_path):
    prepared = data_lib.prepare_time_split(
        data_lib.default_source(), str(tmp_path / "data"), max_rows=300
    )
    serving = tmp_path / "serving"
    config = load_kubeflow_config(
        EXAMPLE_CONFIG,
        [
            # Paths the steps see (a PVC on a cluster); artifacts go through the object store.
            "data_root=/nonexistent/overridden/by/the/run/parameter",
            f"schema_path={os.path.join(REPO, 'schemas', 'taxi', 'schema.pbtxt')}",
            f"serving_base={serving}",
            "settings.train_steps=20",
            "settings.eval_steps=5",
            "settings.hyperparameters.epochs=1",
            # A 300-row slice trained for 20 steps: blessing must not hinge on model quality.
            "settings.evaluation.min_auc=0",
            "settings.evaluation.min_auc_credit_card=0",
            "settings.evaluation.max_auc_drop=1",
        ],
    )
    docs = spec_lib.parse(spec_lib.render(compiler.compile_pipeline(config)))
    result = launcher.run_spec(docs, str(tmp_path / "kfp"), arguments={"data_root": prepared.root})

    assert list(result.tasks) == [
        "ExampleGen", "SchemaImporter", "StatisticsGen", "ExampleValidator", "AnomaliesGate",
        "Transform", "Trainer", "LatestPushedModel", "Evaluator", "Pusher",
    ]  # fmt: skip
    examples = result.tasks["ExampleGen"].outputs["examples"]
    assert json.loads(examples["metadata"]["split_names"]) == ["train", "eval"]
    assert "input_fingerprint" in examples["metadata"]  # The ExampleGen driver ran.
    blessing = result.tasks["Evaluator"].outputs["blessing"]
    assert blessing["metadata"]["blessed"] == 1
    assert blessing["metadata"]["current_model"] == result.tasks["Trainer"].outputs["model"]["uri"]
    pushed = result.tasks["Pusher"].outputs["pushed_model"]
    assert pushed["metadata"]["pushed"] == 1
    version_dir = pushed["metadata"]["pushed_destination"]
    assert os.path.dirname(version_dir) == str(serving / config.settings.model_name)
    assert os.path.isfile(os.path.join(version_dir, "saved_model.pb"))
    store = launcher.ObjectStore(str(tmp_path / "kfp" / "objectstore"))
    model_uri = result.tasks["Trainer"].outputs["model"]["uri"]
    assert model_uri.startswith("minio://mlpipeline/v2/artifacts/local-run/Trainer/")
    assert os.path.isfile(os.path.join(store.path(model_uri), "Format-Serving", "saved_model.pb"))
