"""Compile: determinism, golden file, supported constructs only, GPU placement, task identity,
the source fingerprint task, caching rules, artifact types, strict re-parse."""

import json
import os
import re
import shutil
import subprocess
import sys

import pytest
from tfx import v1 as tfx
from tfx.dsl.components.base import base_component, base_executor, executor_spec
from tfx.types.component_spec import ChannelParameter, ComponentSpec

from commands import cli
from components import ui_artifacts
from components.data_prep import source as source_lib
from components.data_prep.artifacts import PreparedData
from components.data_prep.component import DataPrep
from pipeline import pipeline as pipeline_lib
from pipeline.config import ConfigError
from runners.kubeflow import compiler
from runners.kubeflow import spec as spec_lib
from runners.kubeflow.config import load_kubeflow_config
from runners.kubeflow.pod.writable import IMAGE_UID
from tests.runners.kubeflow import golden as golden_lib
from tests.runners.kubeflow.conftest import EXAMPLE_CONFIG, GOLDEN, REPO, TOOL_PYTHON


def test_two_compiles_are_byte_identical(example_config, compiled, tmp_path):
    first = compiler.write_spec(compiled, str(tmp_path / "a.yaml"))
    second = compiler.write_spec(
        compiler.compile_pipeline(example_config), str(tmp_path / "b.yaml")
    )
    with open(first, "rb") as a, open(second, "rb") as b:
        assert a.read() == b.read()


def test_spec_matches_golden_both_ways(compiled):
    with open(GOLDEN) as f:
        golden = golden_lib.normalise(spec_lib.parse(f.read()))
    fresh = golden_lib.normalise(compiled)
    differences = golden_lib.diff(golden.pipeline_spec, fresh.pipeline_spec) + golden_lib.diff(
        golden.platform_spec, fresh.platform_spec
    )
    assert not differences, (
        "spec drifted from kubeflow/pipeline/golden (run `make compile-golden`):\n"
        + "\n".join(differences[:40])
    )


def test_diff_reports_both_directions():
    assert golden_lib.diff({"a": 1, "b": 2}, {"a": 1, "c": 3}) == ["missing: b", "unexpected: c"]
    assert golden_lib.diff({"a": [1, 2]}, {"a": [1, 3]}) == ["changed: a[1]: 2 != 3"]


def test_check_command_passes_the_golden_and_names_a_cached_external_read(tmp_path, capsys):
    assert cli.main(["check", "--spec", GOLDEN]) == 0
    with open(GOLDEN) as f:
        docs = spec_lib.parse(f.read())
    tasks = docs.pipeline_spec["root"]["dag"]["tasks"]
    tasks["ServedModel"]["cachingOptions"] = {"enableCache": True}
    path = compiler.write_spec(docs, str(tmp_path / "cached-served-model.yaml"))
    assert cli.main(["check", "--spec", path]) == 1
    assert "task ServedModel: reads external state but cachingOptions.enableCache is true" in (
        capsys.readouterr().out
    )


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


def test_task_names_are_task_keys_and_steps_are_described(compiled):
    spec = compiled.pipeline_spec
    tasks = spec["root"]["dag"]["tasks"]
    assert sorted(tasks) == sorted(
        (compiler.FINGERPRINT_TASK, compiler.SERVED_MODEL_TASK, *pipeline_lib.NODE_IDS)
    )
    for name, task in tasks.items():
        assert task["taskInfo"]["name"] == name
        assert f"{name}: " in spec["pipelineInfo"]["description"]
    assert spec["pipelineInfo"]["displayName"] == "chicago-taxi"
    assert spec["defaultPipelineRoot"] == "minio://mlpipeline/v2/artifacts"


def test_only_the_source_is_a_parameter_and_its_fingerprint_keys_data_prep(
    compiled, example_config
):
    spec = compiled.pipeline_spec
    parameters = spec["root"]["inputDefinitions"]["parameters"]
    assert sorted(parameters) == ["source_uri"]
    assert parameters["source_uri"]["defaultValue"] == example_config.source_uri
    tasks = spec["root"]["dag"]["tasks"]
    data_prep = tasks["DataPrep"]
    assert data_prep["inputs"]["parameters"]["source_fingerprint"] == {
        "taskOutputParameter": {
            "producerTask": "SourceFingerprint",
            "outputParameterKey": "fingerprint",
        }
    }
    assert data_prep["inputs"]["parameters"]["source_uri"] == {
        "componentInputParameter": "source_uri"
    }
    assert data_prep["dependentTasks"] == ["SourceFingerprint"]
    assert tasks["SourceFingerprint"]["inputs"]["parameters"]["source_uri"] == {
        "componentInputParameter": "source_uri"
    }
    cached = {name for name, task in tasks.items() if task["cachingOptions"].get("enableCache")}
    assert cached == set(tasks) - {"SourceFingerprint", "ServedModel"}


def test_served_model_identity_keys_the_steps_that_compare_with_it(compiled, example_config):
    tasks = compiled.pipeline_spec["root"]["dag"]["tasks"]
    from_task = {
        "taskOutputParameter": {"producerTask": "ServedModel", "outputParameterKey": "served_model"}
    }
    readers = {
        name
        for name, task in tasks.items()
        if task.get("inputs", {}).get("parameters", {}).get("served_model") == from_task
    }
    # The Evaluator, LoadTest and Pusher follow through LatestPushedModel's output artifact.
    assert readers == {"LatestPushedModel", "DriftGate"}
    for name in readers:
        assert "ServedModel" in tasks[name]["dependentTasks"], name
    assert "served_model" not in compiled.pipeline_spec["root"]["inputDefinitions"]["parameters"]
    assert tasks["Evaluator"]["inputs"]["artifacts"]["baseline_model"]["taskOutputArtifact"] == {
        "producerTask": "LatestPushedModel",
        "outputArtifactKey": "baseline_model",
    }
    label = spec_lib.executor_label_of(compiled.pipeline_spec, "ServedModel")
    container = compiled.pipeline_spec["deploymentSpec"]["executors"][label]["container"]
    assert container["command"] == list(spec_lib.SERVED_MODEL_COMMAND)
    model_dir = example_config.model_dir
    assert container["args"][:4] == [
        "--model-dir",
        model_dir,
        "--writable",
        f"{model_dir}:/mnt/taxi",
    ]
    # Every mounted path a step writes, and only those: Beam's scratch too when on the claim.
    assert compiler.written_mounted_paths(example_config) == [(model_dir, "/mnt/taxi")]
    scratch = load_kubeflow_config(EXAMPLE_CONFIG, ["beam.temp_location=/mnt/taxi/tmp/beam"])
    assert compiler.written_mounted_paths(scratch) == [
        (model_dir, "/mnt/taxi"),
        ("/mnt/taxi/tmp/beam", "/mnt/taxi"),
    ]
    elsewhere = load_kubeflow_config(
        EXAMPLE_CONFIG, ["serving_base=gs://bucket/serving", "beam.temp_location=/scratch"]
    )
    assert compiler.written_mounted_paths(elsewhere) == []


def _run_served_model_task(compiled, output, model_dir, uid=None):
    label = spec_lib.executor_label_of(compiled.pipeline_spec, "ServedModel")
    container = compiled.pipeline_spec["deploymentSpec"]["executors"][label]["container"]
    # Fill the output placeholder as KFP's launcher does; the volume is a folder under tmp.
    paths = {
        "{{$.outputs.parameters['served_model'].output_file}}": str(output),
        "/mnt/taxi/serving/chicago_taxi": str(model_dir),
        "/mnt/taxi/serving/chicago_taxi:/mnt/taxi": f"{model_dir}:{model_dir.parent}",
    }
    args = [paths.get(arg, arg) for arg in container["args"]]
    assert container["command"][0] == "python"
    command = [sys.executable, *container["command"][1:], *args]
    if uid is not None:
        # The image's user without root's right to write anywhere; reading the interpreter
        # (under /root here) is all it keeps.
        command = [
            "setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups",
            "--inh-caps=+dac_read_search", "--ambient-caps=+dac_read_search", *command,
        ]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, check=False, cwd=REPO)


def test_served_model_task_reports_the_identity_and_checks_the_volume(compiled, tmp_path):
    import model_contract
    from components.latest_pushed_model import served

    model_dir = tmp_path / "serving" / "chicago_taxi"
    result = _run_served_model_task(compiled, tmp_path / "out" / "served_model", model_dir)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out" / "served_model").read_text() == "none"
    (model_dir / "17").mkdir()
    (model_dir / "17" / "saved_model.pb").write_bytes(b"x")
    result = _run_served_model_task(compiled, tmp_path / "out" / "served_model", model_dir)
    identity = (tmp_path / "out" / "served_model").read_text()
    assert identity.startswith("version=17 saved_model=sha256:")
    assert identity == served.served_model_identity(
        model_contract.LocalFileSystem(), str(model_dir)
    )


def test_served_model_task_fails_on_a_volume_the_image_user_cannot_write(compiled, tmp_path):
    if os.getuid() != 0 or not shutil.which("setpriv"):
        pytest.skip("needs root and setpriv to run the task as the image's uid")
    volume = tmp_path / "volume"
    volume.mkdir(mode=0o755)  # Owned by root, mode 0755: as a fresh claim often is.
    model_dir = volume / "chicago_taxi"
    (tmp_path / "out").mkdir()
    os.chown(tmp_path / "out", IMAGE_UID, IMAGE_UID)  # KFP's output folder is the step's own.
    output = tmp_path / "out" / "served_model"
    result = _run_served_model_task(compiled, output, model_dir, uid=IMAGE_UID)
    assert result.returncode == 1
    assert f"{model_dir} is not writable by uid {IMAGE_UID}" in result.stderr
    assert f"{volume} is owned by uid 0" in result.stderr
    assert f"chown -R {IMAGE_UID}:" in result.stderr and "fsGroup" in result.stderr
    assert not output.exists()
    os.chown(volume, IMAGE_UID, IMAGE_UID)  # The one-time fix the message names.
    result = _run_served_model_task(compiled, output, model_dir, uid=IMAGE_UID)
    assert result.returncode == 0, result.stderr


def test_fingerprint_task_command_writes_the_source_fingerprint(compiled, tmp_path):
    source = tmp_path / "source"
    source.mkdir()
    (source / "a.csv").write_text("trip_start_timestamp,fare\n1,2.5\n")
    spec = compiled.pipeline_spec
    label = spec_lib.executor_label_of(spec, compiler.FINGERPRINT_TASK)
    container = spec["deploymentSpec"]["executors"][label]["container"]
    output = tmp_path / "outputs" / "fingerprint"
    # Fill the placeholders as KFP's launcher does, then run the command the spec names.
    placeholders = {
        "{{$.inputs.parameters['source_uri']}}": str(source),
        "{{$.outputs.parameters['fingerprint'].output_file}}": str(output),
    }
    args = [placeholders.get(arg, arg) for arg in container["args"]]
    assert container["command"][0] == "python"
    result = subprocess.run(
        [sys.executable, *container["command"][1:], *args],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert output.read_text() == source_lib.fingerprint_source(str(source))
    missing = [placeholders.get(arg, arg) for arg in container["args"]]
    missing[missing.index(str(source))] = str(tmp_path / "none")
    result = subprocess.run(
        [sys.executable, *container["command"][1:], *missing],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1 and "does not exist" in result.stderr


class _ReportExecutor(base_executor.BaseExecutor):
    def Do(self, input_dict, output_dict, exec_properties):  # noqa: N802 (TFX's name)
        pass


class _ReportSpec(ComponentSpec):
    PARAMETERS: dict = {}
    INPUTS = {"prepared": ChannelParameter(type=PreparedData)}
    OUTPUTS = {"report": ChannelParameter(type=ui_artifacts.Markdown)}


class _Report(base_component.BaseComponent):
    SPEC_CLASS = _ReportSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(_ReportExecutor)


class _ReaderSpec(ComponentSpec):
    PARAMETERS: dict = {}
    INPUTS = {"report": ChannelParameter(type=ui_artifacts.Markdown)}
    OUTPUTS: dict = {}


class _Reader(base_component.BaseComponent):
    SPEC_CLASS = _ReaderSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(_ReportExecutor)


def test_ui_and_project_artifact_types_compile_to_what_ui_and_container_read(example_config):
    data_prep = DataPrep(source_uri="/d", source_fingerprint="f", eval_fraction=0.2).with_id(
        "DataPrep"
    )
    report = _Report(
        spec=_ReportSpec(
            prepared=data_prep.outputs["prepared_data"],
            report=tfx.dsl.Channel(type=ui_artifacts.Markdown),
        )
    ).with_id("Report")
    reader = _Reader(spec=_ReaderSpec(report=report.outputs["report"])).with_id("Reader")
    docs = compiler.compile_tfx_pipeline(
        tfx.dsl.Pipeline(
            pipeline_name="ui-types",
            pipeline_root="gs://b/r",
            components=[data_prep, report, reader],
        ),
        example_config,
    )
    components = docs.pipeline_spec["components"]
    markdown = {"schemaTitle": "system.Markdown", "schemaVersion": "0.0.1"}
    assert (
        components["Report"]["outputDefinitions"]["artifacts"]["report"]["artifactType"] == markdown
    )
    assert (
        components["Reader"]["inputDefinitions"]["artifacts"]["report"]["artifactType"] == markdown
    )
    prepared = components["Report"]["inputDefinitions"]["artifacts"]["prepared"]["artifactType"]
    assert spec_lib.artifact_title(prepared) == "components.data_prep.artifacts.PreparedData"
    # The executor's own copy of its inputs spec (what TFX rebuilds artifacts from) agrees.
    args = docs.pipeline_spec["deploymentSpec"]["executors"]["Reader_executor"]["container"]["args"]
    inputs_spec = json.loads(args[args.index(spec_lib.INPUTS_SPEC_FLAG) + 1])
    assert inputs_spec["artifacts"]["report"]["artifactType"] == markdown


def test_strict_reparse_names_what_does_not_parse(compiled):
    docs = spec_lib.parse(spec_lib.render(compiled))
    docs.pipeline_spec["root"]["dag"]["tasks"]["Trainer"]["taskInfo"]["title"] = "Train"
    with pytest.raises(spec_lib.InvalidSpecError, match=r"PipelineSpec.*title"):
        spec_lib.check_strictly(docs)
    docs = spec_lib.parse(spec_lib.render(compiled))
    docs.pipeline_spec["deploymentSpec"]["executors"]["Trainer_executor"]["container"]["gpu"] = 1
    with pytest.raises(spec_lib.InvalidSpecError, match=r"deploymentSpec.*gpu"):
        spec_lib.check_strictly(docs)
    docs = spec_lib.parse(spec_lib.render(compiled))
    docs.platform_spec["platforms"]["kubernetes"]["deploymentSpecs"] = {}
    with pytest.raises(spec_lib.InvalidSpecError, match=r"platform spec.*deploymentSpecs"):
        spec_lib.check_strictly(docs)


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ("image=tfx-taxi:latest", "image"),
        ("pipeline_root=/mnt/pvc/root", "pipeline_root"),
        ("source_uri=s3://bucket/data", "source_uri"),
        ("trainer.tolerations=nvidia.com/gpu", "trainer.tolerations"),
        ("trainer.node_selector=pool", "trainer.node_selector"),
        ("trainer.accelerator_count=-1", "trainer.accelerator_count"),
        ("pvc_mounts=Bad_Name:/x", "pvc_mounts"),
        ("settings.pipeline_name=chicago_taxi", "settings.pipeline_name"),
        ("trainer.accelerator_type=", "trainer.accelerator_type"),
        ("trainer.memory_limit_gb=-1", "trainer.memory_limit_gb"),
        ("beam.runner=dask", "beam.runner"),
        ("beam.runner=flink", "beam.job_endpoint"),
        ("trainer.no_such_field=1", "Unknown config field(s) ['trainer.no_such_field']"),
    ],
)
def test_bad_config_value_fails_naming_the_field(override, field):
    with pytest.raises(ConfigError, match=re.escape(field)):
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
