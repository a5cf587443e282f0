"""The step entrypoint: URI mapping and fixing what open-source KFP's driver hands to TFX."""

import json

import pytest
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2
from tfx.orchestration.kubeflow.v2.container import kubeflow_v2_entrypoint_utils as tfx_utils

from components import ui_artifacts
from runners.kubeflow.pod import container

EXAMPLES_SCHEMA = "title: tfx.Examples\ntype: object\n"


def test_local_paths_follow_kfp_launcher():
    assert container.local_path_for_uri("gs://b/r/t/model") == "/gcs/b/r/t/model"
    assert container.local_path_for_uri("s3://b/k") == "/s3/b/k"
    assert (
        container.local_path_for_uri("minio://mlpipeline/v2/x", "/pod")
        == "/pod/minio/mlpipeline/v2/x"
    )
    assert container.local_path_for_uri("/mnt/pvc/schema.pbtxt") is None


def test_map_artifact_uris_rewrites_and_reverses():
    artifacts = {
        "model": {"artifacts": [{"uri": "minio://b/m"}]},
        "schema": {"artifacts": [{"uri": "/x"}]},
    }
    reverse = container.map_artifact_uris(
        artifacts, lambda u: container.local_path_for_uri(u, "/p")
    )
    assert artifacts["model"]["artifacts"][0]["uri"] == "/p/minio/b/m"
    assert artifacts["schema"]["artifacts"][0]["uri"] == "/x"
    assert reverse == {"/p/minio/b/m": "minio://b/m"}


def _driver_input() -> dict:
    """An ExecutorInput as open-source KFP's driver builds it for a step after ExampleGen."""
    return {
        "inputs": {
            "artifacts": {
                "examples": {
                    "artifacts": [
                        {
                            "name": "42",
                            "uri": "minio://mlpipeline/v2/artifacts/p/r/ExampleGen/u/examples",
                            "type": {"instanceSchema": ""},
                            "metadata": {
                                "span": 0.0,
                                "split_names": '["train", "eval"]',
                                "sources": {"list": ["a.csv"]},
                            },
                        }
                    ]
                }
            }
        },
        "outputs": {
            "artifacts": {
                "report": {
                    "artifacts": [
                        {
                            "uri": "minio://mlpipeline/v2/artifacts/p/r/T/u/report",
                            "type": {"schemaTitle": "system.Markdown"},
                        }
                    ]
                },
                "executor-logs": {
                    "artifacts": [
                        {
                            "uri": "minio://mlpipeline/v2/artifacts/p/r/T/u/executor-logs",
                            "type": {"schemaTitle": "system.Artifact"},
                        }
                    ]
                },
            },
            "outputFile": "/tmp/kfp_outputs/output_metadata.json",
        },
    }


def test_fixed_driver_input_parses_into_tfx_artifacts():
    inputs_spec = {"artifacts": {"examples": {"artifactType": {"instanceSchema": EXAMPLES_SCHEMA}}}}
    raw = _driver_input()
    # As the driver hands it over, TFX fails on the untyped input and on `executor-logs`.
    with pytest.raises(AttributeError):
        _parse_with_tfx(raw, "inputs")
    logs_only = {
        "outputs": {"artifacts": {"executor-logs": raw["outputs"]["artifacts"]["executor-logs"]}}
    }
    with pytest.raises(ImportError, match=r"Could not import system\.Artifact"):
        _parse_with_tfx(logs_only, "outputs")
    report_only = {"outputs": {"artifacts": {"report": raw["outputs"]["artifacts"]["report"]}}}
    with pytest.raises(ImportError, match=r"Could not import system\.Markdown"):
        _parse_with_tfx(report_only, "outputs")
    fixed = container.fix_executor_input(raw, inputs_spec)
    assert "executor-logs" not in fixed["outputs"]["artifacts"]
    inputs, outputs = _parse_with_tfx(fixed, "inputs"), _parse_with_tfx(fixed, "outputs")
    examples = inputs["examples"][0]
    assert examples.type_name == "Examples"
    assert examples.split_names == '["train", "eval"]'
    assert examples.span == 0  # A float from MLMD lands in the INT property.
    assert examples.get_custom_property("sources") == ["a.csv"]  # Unwrapped.
    assert isinstance(outputs["report"][0], ui_artifacts.Markdown)


def _parse_with_tfx(executor_input: dict, section: str) -> dict:
    """Parses one section's artifacts as TFX's Kubeflow v2 entrypoint does."""
    message = pipeline_spec_pb2.ExecutorInput()
    json_format.Parse(json.dumps(executor_input), message)
    return tfx_utils.parse_raw_artifact_dict(getattr(message, section).artifacts)


def test_untyped_input_outside_the_inputs_spec_fails_naming_it():
    with pytest.raises(ValueError, match="input artifact 'examples' arrived without a type"):
        container.fix_executor_input(_driver_input(), {"parameters": {}})


def test_missing_input_directories_are_recreated(tmp_path):
    present = tmp_path / "present"
    present.mkdir()
    executor_input = {
        "inputs": {
            "artifacts": {
                "a": {"artifacts": [{"uri": str(tmp_path / "vanished")}]},
                "b": {"artifacts": [{"uri": str(present)}]},
                "c": {"artifacts": [{"uri": "minio://not/mapped"}]},
            }
        }
    }
    assert container.recreate_missing_input_dirs(executor_input) == [str(tmp_path / "vanished")]
    assert (tmp_path / "vanished").is_dir()
