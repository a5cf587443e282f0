"""The step entrypoint's URI mapping, the launcher's ordering and placeholder filling."""

import pytest

from pipeline.kubeflow_v2 import container, launcher
from pipeline.kubeflow_v2 import spec as spec_lib


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


def test_order_follows_artifacts_and_rejects_cycles():
    spec = {
        "root": {
            "dag": {
                "tasks": {
                    "b": {
                        "inputs": {
                            "artifacts": {"x": {"taskOutputArtifact": {"producerTask": "a"}}}
                        }
                    },
                    "a": {},
                    "c": {"dependentTasks": ["b"]},
                }
            }
        }
    }
    assert launcher.order_tasks(spec) == ["a", "b", "c"]
    spec["root"]["dag"]["tasks"]["a"]["dependentTasks"] = ["c"]
    with pytest.raises(spec_lib.UnsupportedConstructError, match="dependency cycle"):
        launcher.order_tasks(spec)


def test_unresolvable_placeholder_fails_naming_it():
    with pytest.raises(
        spec_lib.UnsupportedConstructError, match=r"\{\{\$.inputs.artifacts\['x'\].path\}\}"
    ):
        launcher._fill("T", "--in={{$.inputs.artifacts['x'].path}}", {"{{$}}": "{}"})


def test_parameter_types_are_checked_like_the_driver():
    component = {"inputDefinitions": {"parameters": {"n": {"parameterType": "NUMBER_INTEGER"}}}}
    task = {"inputs": {"parameters": {"n": {"runtimeValue": {"constant": "3"}}}}}
    with pytest.raises(ValueError, match="'n' is '3', not NUMBER_INTEGER"):
        launcher.resolve_parameters("T", task, component, {}, {})
    task = {"inputs": {"parameters": {"n": {"runtimeValue": {"constantValue": {"intValue": 3}}}}}}
    with pytest.raises(spec_lib.UnsupportedConstructError, match="constantValue"):
        launcher.resolve_parameters("T", task, component, {}, {})
