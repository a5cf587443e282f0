"""KFP's cache and the `ServedModel` task on the emulated backend, in seconds: the compiled
task's own command feeds a cached step, whose output artifact feeds another, as
ServedModel -> LatestPushedModel -> Evaluator do in the pipeline (the whole pipeline runs the
same five cases in the slow `test_local_run.py`)."""

import pytest

import model_contract
from devtools.kfp_backend import backend as backend_lib
from runners.kubeflow import spec as spec_lib
from tests.runners.kubeflow.conftest import GOLDEN

LOCAL = """
def local(uri):
    scheme, rest = uri.split("://")
    return {"gs": "/gcs/", "s3": "/s3/", "minio": "/minio/"}[scheme] + rest
"""
# Stands for LatestPushedModel: an artifact from its `served_model` parameter.
BASELINE = (
    LOCAL
    + """
import json, os, sys
out = json.loads(sys.argv[1])["outputs"]["artifacts"]["baseline"]["artifacts"][0]
os.makedirs(os.path.dirname(local(out["uri"])), exist_ok=True)
with open(local(out["uri"]), "w") as f:
    f.write(sys.argv[2])
"""
)
# Stands for the Evaluator: reads the baseline artifact only.
EVALUATE = (
    LOCAL
    + """
import json, os, sys
ei = json.loads(sys.argv[1])
baseline = ei["inputs"]["artifacts"]["baseline"]["artifacts"][0]
out = ei["outputs"]["artifacts"]["evaluation"]["artifacts"][0]
with open(local(baseline["uri"])) as f, open(local(out["uri"]), "w") as g:
    g.write("against " + f.read())
"""
)


def _spec(model_dir: str) -> spec_lib.PipelineDocs:
    with open(GOLDEN) as f:
        golden = spec_lib.parse(f.read()).pipeline_spec
    served = golden["deploymentSpec"]["executors"]["ServedModel_executor"]["container"]
    configured = served["args"][1]
    args = [a.replace(configured, model_dir) for a in served["args"]]
    artifact = {"artifactType": {"schemaTitle": "system.Artifact"}}
    from_served = {
        "taskOutputParameter": {"producerTask": "ServedModel", "outputParameterKey": "served_model"}
    }
    spec = {
        "schemaVersion": "2.1.0",
        "pipelineInfo": {"name": "served-model-cache"},
        "root": {
            "dag": {
                "tasks": {
                    "ServedModel": {
                        **golden["root"]["dag"]["tasks"]["ServedModel"],
                    },
                    "Baseline": {
                        "taskInfo": {"name": "Baseline"},
                        "componentRef": {"name": "Baseline"},
                        "cachingOptions": {"enableCache": True},
                        "dependentTasks": ["ServedModel"],
                        "inputs": {"parameters": {"served_model": from_served}},
                    },
                    "Evaluate": {
                        "taskInfo": {"name": "Evaluate"},
                        "componentRef": {"name": "Evaluate"},
                        "cachingOptions": {"enableCache": True},
                        "dependentTasks": ["Baseline"],
                        "inputs": {
                            "artifacts": {
                                "baseline": {
                                    "taskOutputArtifact": {
                                        "producerTask": "Baseline",
                                        "outputArtifactKey": "baseline",
                                    }
                                }
                            }
                        },
                    },
                }
            }
        },
        "components": {
            "ServedModel": golden["components"]["ServedModel"],
            "Baseline": {
                "executorLabel": "Baseline_executor",
                "inputDefinitions": {"parameters": {"served_model": {"parameterType": "STRING"}}},
                "outputDefinitions": {"artifacts": {"baseline": artifact}},
            },
            "Evaluate": {
                "executorLabel": "Evaluate_executor",
                "inputDefinitions": {"artifacts": {"baseline": artifact}},
                "outputDefinitions": {"artifacts": {"evaluation": artifact}},
            },
        },
        "deploymentSpec": {
            "executors": {
                "ServedModel_executor": {"container": {**served, "args": args}},
                "Baseline_executor": {
                    "container": {
                        "image": "tiny:1",
                        "command": ["python", "-c", BASELINE],
                        "args": ["{{$}}", "{{$.inputs.parameters['served_model']}}"],
                    }
                },
                "Evaluate_executor": {
                    "container": {
                        "image": "tiny:1",
                        "command": ["python", "-c", EVALUATE],
                        "args": ["{{$}}"],
                    }
                },
            }
        },
    }
    return spec_lib.PipelineDocs(spec, {})


def _version(model_dir, version: int) -> None:
    path = model_dir / str(version)
    (path / "assets.extra").mkdir(parents=True)
    (path / "saved_model.pb").write_bytes(b"graph")
    (path / "assets.extra" / "push_manifest.json").write_text(f'{{"model_uri": "m{version}"}}')


def test_the_cached_steps_run_again_exactly_when_the_served_model_changes(tmp_path) -> None:
    try:
        backend_lib.check_pod_isolation()
    except backend_lib.PodIsolationError as e:
        pytest.skip(str(e))
    model_dir = tmp_path / "serving" / "chicago_taxi"
    docs = _spec(str(model_dir))
    backend = backend_lib.Backend(str(tmp_path / "state"), version="2.14.0")

    def run(run_id: str) -> dict[str, str]:
        result = backend.run(docs, run_id=run_id)
        return {name: result.tasks[name].state for name in ("ServedModel", "Baseline", "Evaluate")}

    ran = {"ServedModel": "COMPLETE", "Baseline": "COMPLETE", "Evaluate": "COMPLETE"}
    cached = {"ServedModel": "COMPLETE", "Baseline": "CACHED", "Evaluate": "CACHED"}
    assert run("fresh") == ran
    assert model_dir.is_dir()  # Created by the writability check.
    assert run("unchanged") == cached
    _version(model_dir, 100)
    assert run("after-push-1") == ran
    _version(model_dir, 200)
    assert run("after-push-2") == ran
    assert run("unchanged-2") == cached
    assert model_contract.roll_back(model_contract.LocalFileSystem(), str(model_dir)) == [200]
    # Version 100 again, as after push 1, but a rollback is a change: compared again.
    assert run("after-rollback") == ran
    assert run("unchanged-3") == cached
