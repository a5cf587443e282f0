"""Compile: determinism, golden file, supported constructs only, GPU placement, UI names."""

import json
import os
import subprocess

import pytest
from tfx import v1 as tfx

from pipeline.config import ConfigError
from pipeline.kubeflow_v2 import compiler
from pipeline.kubeflow_v2 import spec as spec_lib
from pipeline.kubeflow_v2.config import load_kubeflow_config
from tests.kubeflow.conftest import EXAMPLE_CONFIG, GOLDEN, REPO, TOOL_PYTHON


def test_two_compiles_are_byte_identical(example_config, compiled, tmp_path):
    first = compiler.write_spec(compiled, str(tmp_path / "a.yaml"))
    second = compiler.write_spec(
        compiler.compile_pipeline(example_config), str(tmp_path / "b.yaml")
    )
    with open(first, "rb") as a, open(second, "rb") as b:
        assert a.read() == b.read()


def test_spec_matches_golden_both_ways(compiled):
    with open(GOLDEN) as f:
        golden = spec_lib.normalise(spec_lib.parse(f.read()))
    fresh = spec_lib.normalise(compiled)
    differences = spec_lib.diff(golden.pipeline_spec, fresh.pipeline_spec) + spec_lib.diff(
        golden.platform_spec, fresh.platform_spec
    )
    assert not differences, (
        "spec drifted from kubeflow/golden (run `make compile-golden`):\n"
        + "\n".join(differences[:40])
    )


def test_diff_reports_both_directions():
    assert spec_lib.diff({"a": 1, "b": 2}, {"a": 1, "c": 3}) == ["missing: b", "unexpected: c"]
    assert spec_lib.diff({"a": [1, 2]}, {"a": [1, 3]}) == ["changed: a[1]: 2 != 3"]


def test_compiled_spec_has_only_supported_constructs(compiled):
    assert spec_lib.find_unsupported_constructs(compiled) == []
    text = spec_lib.render(compiled)
    for construct in ("resolver", "lifecycle", "preCacheCheck", "constantValue", "customJob"):
        assert construct not in text
    example_gen = compiled.pipeline_spec["deploymentSpec"]["executors"]["ExampleGen_executor"][
        "container"
    ]
    assert example_gen["args"][0] == spec_lib.EXAMPLE_GEN_DRIVER_FLAG


def _resolver_pipeline(tmp_path):
    example_gen = tfx.components.CsvExampleGen(input_base=str(tmp_path))
    resolver = tfx.dsl.Resolver(
        strategy_class=tfx.dsl.experimental.LatestBlessedModelStrategy,
        model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model),
        model_blessing=tfx.dsl.Channel(type=tfx.types.standard_artifacts.ModelBlessing),
    ).with_id("BaselineResolver")
    return tfx.dsl.Pipeline(
        pipeline_name="resolver-demo",
        pipeline_root="gs://b/root",
        components=[example_gen, resolver],
    )


def test_checker_names_tfx_resolver(example_config, tmp_path):
    with pytest.raises(spec_lib.UnsupportedConstructError) as e:
        compiler.compile_tfx_pipeline(_resolver_pipeline(tmp_path), example_config)
    assert "BaselineResolver-model-resolver_executor: resolver executor" in str(e.value)
    assert "BaselineResolver-model-blessing-resolver_executor: resolver executor" in str(e.value)


def test_checker_names_hooks_legacy_values_and_foreign_commands(compiled):
    docs = spec_lib.parse(spec_lib.render(compiled))
    executors = docs.pipeline_spec["deploymentSpec"]["executors"]
    executors["Pusher_executor"]["container"]["lifecycle"] = {"preCacheCheck": {"command": ["x"]}}
    executors["Evaluator_executor"]["container"]["command"] = ["python", "-m", "tfx.other"]
    task = docs.pipeline_spec["root"]["dag"]["tasks"]["Trainer"]
    task["inputs"]["parameters"]["train_args"]["runtimeValue"] = {
        "constantValue": {"stringValue": "{}"}
    }
    task["triggerPolicy"] = {"condition": "true"}
    problems = "\n".join(spec_lib.find_unsupported_constructs(docs))
    assert "Pusher_executor: container.lifecycle" in problems
    assert "Evaluator_executor: command" in problems
    assert "task Trainer: input parameter train_args runtimeValue ['constantValue']" in problems
    assert "task Trainer: triggerPolicy" in problems


def test_trainer_alone_requests_gpu_on_gpu_pool(compiled):
    spec = compiled.pipeline_spec
    executors = spec["deploymentSpec"]["executors"]
    trainer = executors["Trainer_executor"]["container"]["resources"]
    assert trainer["accelerator"] == {"type": "nvidia.com/gpu", "count": "1"}
    assert (trainer["cpuLimit"], trainer["memoryLimit"]) == (4.0, 16.0)
    platform = compiled.platform_spec["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert platform["Trainer_executor"]["nodeSelector"] == {"labels": {"pool": "gpu"}}
    assert platform["Trainer_executor"]["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    ]
    containers = sorted(label for label, e in executors.items() if "container" in e)
    assert sorted(platform) == containers
    for label in containers:
        if label != "Trainer_executor":
            assert "resources" not in executors[label]["container"], label
            assert platform[label]["nodeSelector"] == {"labels": {"pool": "cpu"}}, label
            assert "tolerations" not in platform[label], label


def test_vertex_accelerator_name_passes_through(tmp_path):
    config = load_kubeflow_config(EXAMPLE_CONFIG, ["trainer.accelerator_type=NVIDIA_TESLA_T4"])
    resources = compiler.trainer_resource_spec(config)
    assert (resources.accelerator.type, resources.accelerator.count) == ("NVIDIA_TESLA_T4", 1)
    cpu_only = load_kubeflow_config(EXAMPLE_CONFIG, ["trainer.accelerator_count=0"])
    assert not compiler.trainer_resource_spec(cpu_only).HasField("accelerator")


def test_ui_names_and_pipeline_parameters(compiled, example_config):
    spec = compiled.pipeline_spec
    assert spec["pipelineInfo"] == {"name": "chicago-taxi", "displayName": "chicago-taxi"}
    tasks = spec["root"]["dag"]["tasks"]
    assert {n: t["taskInfo"]["name"] for n, t in tasks.items()} == compiler.TASK_DISPLAY_NAMES
    parameter = spec["root"]["inputDefinitions"]["parameters"]["data_root"]
    assert parameter["parameterType"] == "STRING"
    assert parameter["defaultValue"] == example_config.data_root
    assert tasks["ExampleGen"]["inputs"]["parameters"]["input_base"] == {
        "componentInputParameter": "data_root"
    }
    assert spec["defaultPipelineRoot"] == "minio://mlpipeline/v2/artifacts"


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ("image=tfx-taxi:latest", "image"),
        ("pipeline_root=/mnt/pvc/root", "pipeline_root"),
        ("data_root=s3://bucket/data", "data_root"),
        ("trainer.tolerations=nvidia.com/gpu", "trainer.tolerations"),
        ("trainer.node_selector=pool", "trainer.node_selector"),
        ("trainer.accelerator_count=-1", "trainer.accelerator_count"),
        ("pvc_mounts=Bad_Name:/x", "pvc_mounts"),
        ("settings.pipeline_name=chicago_taxi", "settings.pipeline_name"),
    ],
)
def test_bad_config_value_fails_naming_the_field(override, field):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        load_kubeflow_config(EXAMPLE_CONFIG, [override])


def test_image_by_digest_is_accepted():
    digest = "ghcr.io/example/tfx-taxi-kfp@sha256:" + "a" * 64
    assert load_kubeflow_config(EXAMPLE_CONFIG, [f"image={digest}"]).image == digest


def test_platform_section_parses_into_kfp_kubernetes_protos(compiled, tmp_path):
    assert os.path.exists(TOOL_PYTHON), "tool venv missing: run `make kfp-kubernetes-venv`"
    validator = os.path.join(REPO, "devtools", "validate_platform.py")
    path = compiler.write_spec(compiled, str(tmp_path / "spec.yaml"))
    result = subprocess.run(
        [TOOL_PYTHON, validator, path], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    parsed = json.loads(result.stdout)["executors"]
    assert parsed["Trainer_executor"]["tolerations"][0]["key"] == "nvidia.com/gpu"
    # A field the proto does not have is rejected, so the check can fail.
    docs = spec_lib.parse(spec_lib.render(compiled))
    docs.platform_spec["platforms"]["kubernetes"]["deploymentSpec"]["executors"][
        "Trainer_executor"
    ]["tolerations"][0]["efect"] = "NoSchedule"
    bad = compiler.write_spec(docs, str(tmp_path / "bad.yaml"))
    result = subprocess.run(
        [TOOL_PYTHON, validator, bad], capture_output=True, text=True, check=False
    )
    assert result.returncode == 1
    assert "Trainer_executor" in result.stderr and "efect" in result.stderr
