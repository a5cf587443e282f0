"""Compiles the pipeline for open-source KFP v2: TFX's KubeflowV2DagRunner, then typed patches."""

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

import yaml
from absl import logging
from kfp.pipeline_spec import pipeline_spec_pb2

from runners.kubeflow import spec as spec_lib
from runners.kubeflow.config import KubeflowConfig

if TYPE_CHECKING:  # TFX is imported where a pipeline is built, not when this module loads.
    from ml_metadata.proto import metadata_store_pb2
    from tfx.orchestration import pipeline as tfx_pipeline_lib

    from components.tfjob import manifest as tfjob_manifest

TRAINER = "Trainer"
TFJOB_RUN_FN = "components.tfjob.launcher.run_fn"
SOURCE_URI_PARAMETER = "source_uri"
SOURCE_FINGERPRINT_PARAMETER = "source_fingerprint"
FINGERPRINT_TASK = "SourceFingerprint"
FINGERPRINT_OUTPUT = "fingerprint"
SERVED_MODEL_PARAMETER = "served_model"
SERVED_MODEL_TASK = "ServedModel"
SERVED_MODEL_OUTPUT = "served_model"
# KFP's cache key covers parameter values and input artifact ids, never the state behind a
# path (`backend/src/v2/driver/cache.go`, `cacheutils/cache.go`). Two cheap tasks always run
# and turn that state into parameter values: the source data's fingerprint (DataPrep's key)
# and the served model's identity (the key of LatestPushedModel and DriftGate; the Evaluator,
# LoadTest and Pusher follow through LatestPushedModel's output artifact).
ALWAYS_RUN_TASKS = (FINGERPRINT_TASK, SERVED_MODEL_TASK)
# What each step does, for people: the pipeline description in the KFP UI. The UI's step
# names stay the task keys (see `spec_lib.keep_task_identity`).
STEP_TITLES = {
    FINGERPRINT_TASK: "fingerprint the source data (always runs)",
    SERVED_MODEL_TASK: "check the serving volume is writable; identify the served model "
    "(always runs)",
    "DataPrep": "time-ordered train/eval split of the source CSVs",
    "ExampleGen": "CSV to tf.Examples",
    "StatisticsGen": "statistics",
    "SchemaImporter": "curated schema",
    "ExampleValidator": "validate examples against the schema",
    "AnomaliesGate": "stop on anomalies",
    "DriftGate": "stop on drift from the served model's training data",
    "Transform": "feature transform",
    "Trainer": "train (GPU)",
    "LatestPushedModel": "baseline = the served model",
    "Evaluator": "evaluate against thresholds and the baseline, bless",
    "LoadTest": "serve the candidate on loopback and load-test it (pre-push)",
    "Pusher": "push to serving",
}


def trainer_resource_spec(
    config: KubeflowConfig,
) -> pipeline_spec_pb2.PipelineDeploymentConfig.PipelineContainerSpec.ResourceSpec:
    """Builds the Trainer's platform config: KFP's container ResourceSpec.

    Args:
      config: The kubeflow config.

    Returns:
      `PipelineContainerSpec.ResourceSpec` with CPU/memory limits and requests and, when
      `accelerator_count > 0`, the accelerator type (verbatim: `nvidia.com/gpu` for open-source
      KFP, e.g. `NVIDIA_TESLA_T4` for Vertex AI) and count.
    """
    resources = config.trainer
    spec = pipeline_spec_pb2.PipelineDeploymentConfig.PipelineContainerSpec.ResourceSpec(
        cpu_limit=resources.cpu_limit,
        memory_limit=resources.memory_limit_gb,
        cpu_request=resources.cpu_request,
        memory_request=resources.memory_request_gb,
    )
    if resources.accelerator_count > 0:
        spec.accelerator.type = resources.accelerator_type
        spec.accelerator.count = resources.accelerator_count
    return spec


def tfjob_params(config: KubeflowConfig) -> "tfjob_manifest.TFJobParams":
    """The TFJob parameters the Trainer step's launcher gets (see `components.tfjob`)."""
    from components.tfjob import manifest as tfjob_manifest

    tfjob = config.tfjob
    return tfjob_manifest.TFJobParams(
        image=tfjob.image or config.image,
        workers=tfjob.workers,
        gpus_per_replica=tfjob.gpus_per_replica,
        cpu=tfjob.cpu,
        memory_gb=tfjob.memory_gb,
        node_selector=dict(tfjob.node_selector),
        tolerations=[t.to_kubernetes() for t in tfjob.tolerations],
        pvc_mounts=[(m.claim, m.path) for m in config.pvc_mounts],
        backoff_limit=tfjob.backoff_limit,
        timeout_s=tfjob.timeout_s,
    )


def use_tfjob_trainer(trainer: object, params: "tfjob_manifest.TFJobParams") -> None:
    """Points the Trainer at the TFJob launcher: same inputs, outputs and hyperparameters; its
    run_fn creates the TFJob whose replicas run the project's run_fn (TFX's Trainer keeps
    `run_fn` and `custom_config` as exec properties, custom_config as JSON)."""
    from tfx.utils import json_utils

    properties = trainer.exec_properties  # type: ignore[attr-defined]
    custom_config = json_utils.loads(properties["custom_config"] or "{}")
    custom_config["tfjob"] = params.to_json()
    properties["custom_config"] = json_utils.dumps(custom_config)
    properties["run_fn"] = TFJOB_RUN_FN


def build_tfx_pipeline(config: KubeflowConfig) -> "tfx_pipeline_lib.Pipeline":
    """Builds the project's TFX pipeline for KFP: the source as runtime parameters, Trainer GPU.

    Args:
      config: The kubeflow config.

    Returns:
      The TFX pipeline (no MLMD connection: KFP records metadata itself).
    """
    from tfx import v1 as tfx

    from pipeline.beam import apply_node_args
    from pipeline.pipeline import create_pipeline

    tfx_pipeline = create_pipeline(
        config.settings,
        pipeline_root=config.pipeline_root,
        source_uri=tfx.dsl.experimental.RuntimeParameter(
            name=SOURCE_URI_PARAMETER, ptype=str, default=config.source_uri
        ),
        # Rewired by the compiler to the SourceFingerprint task's output.
        source_fingerprint=tfx.dsl.experimental.RuntimeParameter(
            name=SOURCE_FINGERPRINT_PARAMETER, ptype=str
        ),
        # Rewired by the compiler to the ServedModel task's output.
        served_model=tfx.dsl.experimental.RuntimeParameter(name=SERVED_MODEL_PARAMETER, ptype=str),
        schema_path=config.schema_path,
        model_dir=config.model_dir,
        beam_pipeline_args=config.beam_pipeline_args,
        enable_cache=config.enable_cache,
        # With a TFJob the Trainer step only launches and waits: no GPU for its own pod.
        platform_configs={} if config.tfjob.enabled else {TRAINER: trainer_resource_spec(config)},
        push_provenance={"orchestrator": "kubeflow-pipelines-v2", "image": config.image},
        baseline_metadata=baseline_metadata_connection(config),
    )
    # Per-step Beam arguments end up in each step's executor args in the compiled spec.
    apply_node_args(tfx_pipeline.components, config.beam)
    if config.tfjob.enabled:
        trainer = next(c for c in tfx_pipeline.components if c.id == TRAINER)
        use_tfjob_trainer(trainer, tfjob_params(config))
    return tfx_pipeline


def baseline_metadata_connection(
    config: KubeflowConfig,
) -> "metadata_store_pb2.ConnectionConfig | metadata_store_pb2.MetadataStoreClientConfig":
    """Where DriftGate reads the served model's lineage: KFP's own MLMD service.

    The emulated backend has no gRPC service; a config naming `emulated_metadata_sqlite` points
    the gate at that store's SQLite file instead (read-only, as `lineage_graph.connect` opens it).
    """
    from ml_metadata.proto import metadata_store_pb2

    if config.emulated_metadata_sqlite:
        connection = metadata_store_pb2.ConnectionConfig()
        connection.sqlite.filename_uri = config.emulated_metadata_sqlite
        return connection
    return metadata_store_pb2.MetadataStoreClientConfig(
        host=config.metadata_grpc_host, port=config.metadata_grpc_port
    )


def custom_artifact_types(
    tfx_pipeline: "tfx_pipeline_lib.Pipeline",
) -> dict[str, pipeline_spec_pb2.ArtifactTypeSchema]:
    """Maps the title TFX compiles each non-TFX artifact type to, to the type to write instead.

    - UI types (`components.ui_artifacts`, `system.*` names): `schemaTitle` + `schemaVersion`,
      the form the KFP UI renders.
    - Other project types: TFX only accepts `word.Word` type names and writes that name as the
      title, which TFX's container then imports as a class path; the class path is written.

    Args:
      tfx_pipeline: The TFX pipeline compiled.

    Returns:
      Title -> ArtifactTypeSchema.
    """
    from tfx.orchestration.kubeflow.v2 import compiler_utils

    from components.ui_artifacts import CLASS_PATH_BY_TITLE

    result = {}
    for component in tfx_pipeline.components:
        for channel in (*component.outputs.values(), *component.inputs.values()):
            artifact_type = channel.type
            schema = yaml.safe_load(compiler_utils.get_artifact_schema(artifact_type))
            title = schema["title"]
            if title in compiler_utils.TITLE_TO_CLASS_PATH:
                continue
            if title in CLASS_PATH_BY_TITLE:
                result[title] = pipeline_spec_pb2.ArtifactTypeSchema(
                    schema_title=title, schema_version=spec_lib.UI_SCHEMA_VERSION
                )
            else:
                schema["title"] = f"{artifact_type.__module__}.{artifact_type.__qualname__}"
                result[title] = pipeline_spec_pb2.ArtifactTypeSchema(
                    instance_schema=yaml.dump(schema, sort_keys=False)
                )
    return result


def compile_tfx_pipeline(
    tfx_pipeline: "tfx_pipeline_lib.Pipeline", config: KubeflowConfig
) -> spec_lib.PipelineDocs:
    """Compiles any TFX pipeline with KubeflowV2DagRunner and adapts it to open-source KFP v2.

    Steps: compile with pipeline spec schema 2.1 (`constant` values; the open-source driver
    does not implement 2.0's `constantValue`) and this project's container entrypoint; then,
    on the typed spec: a `SourceFingerprint` task feeding every input that read the
    `source_fingerprint` parameter, a `ServedModel` task (writability check of the mounted
    paths steps write, the served model's identity) feeding every input that read
    `served_model`; caching off for those two; task names equal to task keys; UI and project
    artifact types; parameter defaults; then the Kubernetes section (CPU pool for every step,
    GPU pool + tolerations for the Trainer, PVC mounts); a strict re-parse; the
    supported-constructs check.

    Args:
      tfx_pipeline: A TFX pipeline.
      config: The kubeflow config (image, placement, display name).

    Returns:
      The pipeline and platform spec.

    Raises:
      UnsupportedConstructError: If the result still holds something open-source KFP v2
        cannot run (e.g. a Resolver node).
      InvalidSpecError: If the patched spec does not parse strictly into KFP's protos.
    """
    from tfx.orchestration.kubeflow.v2 import kubeflow_v2_dag_runner as runner_lib

    runner_config = runner_lib.KubeflowV2DagRunnerConfig(
        display_name=config.pipeline_display_name,
        default_image=config.image,
        default_commands=list(spec_lib.CONTAINER_COMMAND),
        use_pipeline_spec_2_1=True,
    )
    job = runner_lib.KubeflowV2DagRunner(runner_config).run(tfx_pipeline, write_out=False)
    typed = spec_lib.to_typed(job["pipelineSpec"])
    spec = typed.spec
    parameters = spec.root.input_definitions.parameters
    if SOURCE_FINGERPRINT_PARAMETER in parameters:
        _feed_parameter_from_task(
            typed,
            config,
            parameter=SOURCE_FINGERPRINT_PARAMETER,
            task=FINGERPRINT_TASK,
            command=spec_lib.FINGERPRINT_COMMAND,
            args=["--source-uri", f"{{{{$.inputs.parameters['{SOURCE_URI_PARAMETER}']}}}}"],
            inputs={SOURCE_URI_PARAMETER: SOURCE_URI_PARAMETER},
            output=FINGERPRINT_OUTPUT,
        )
    if SERVED_MODEL_PARAMETER in parameters:
        args = ["--model-dir", config.model_dir]
        for path, mount in written_mounted_paths(config):
            args += ["--writable", f"{path}:{mount}"]
        _feed_parameter_from_task(
            typed,
            config,
            parameter=SERVED_MODEL_PARAMETER,
            task=SERVED_MODEL_TASK,
            command=spec_lib.SERVED_MODEL_COMMAND,
            args=args,
            inputs={},
            output=SERVED_MODEL_OUTPUT,
        )
    tasks = spec.root.dag.tasks
    spec_lib.set_caching(spec, [t for t in ALWAYS_RUN_TASKS if t in tasks], enabled=False)
    spec_lib.keep_task_identity(spec)
    spec_lib.describe_pipeline(
        spec,
        config.pipeline_display_name,
        {name: title for name, title in STEP_TITLES.items() if name in tasks},
    )
    spec_lib.retitle_artifact_types(typed, custom_artifact_types(tfx_pipeline))
    if SOURCE_URI_PARAMETER in parameters:
        spec_lib.set_parameter_defaults(
            spec,
            {SOURCE_URI_PARAMETER: config.source_uri},
            {
                SOURCE_URI_PARAMETER: "Source CSV file or directory as the steps see it "
                "(gs:// or a path on the mounted PVC)."
            },
        )
    spec.default_pipeline_root = config.pipeline_root
    pipeline_spec = spec_lib.to_dict(typed)
    gpu = config.trainer
    # With a TFJob the Trainer step's pod stays on the CPU pool; the TFJob's replicas get the
    # GPU pool (tfjob.node_selector / tfjob.tolerations).
    trainer_present = TRAINER in tasks and not config.tfjob.enabled
    platform_spec = spec_lib.build_kubernetes_platform(
        pipeline_spec,
        default_node_selector=dict(config.cpu_node_selector),
        task_node_selectors={TRAINER: dict(gpu.node_selector)} if trainer_present else {},
        task_tolerations=(
            {TRAINER: [t.to_kubernetes() for t in gpu.tolerations]} if trainer_present else {}
        ),
        pvc_mounts=[(m.claim, m.path) for m in config.pvc_mounts],
    )
    docs = spec_lib.PipelineDocs(pipeline_spec, platform_spec)
    spec_lib.check_strictly(docs)
    spec_lib.check_supported(docs, ALWAYS_RUN_TASKS)
    return docs


def written_mounted_paths(config: KubeflowConfig) -> list[tuple[str, str]]:
    """The paths on mounted volumes that steps write, each with its mount path.

    The Pusher writes versions and DriftGate its statistics copies under the model directory;
    the Beam steps write scratch files under `beam.temp_location` when it is set; every other
    output goes to the pipeline root (an object store). `gs://` paths are not mounts, and are
    not checked.
    """
    written = []
    for path in (config.model_dir, config.beam.temp_location):
        for mount in config.pvc_mounts:
            if path == mount.path or path.startswith(mount.path.rstrip("/") + "/"):
                written.append((path, mount.path))
                break
    return written


def compile_pipeline(config: KubeflowConfig) -> spec_lib.PipelineDocs:
    """Compiles the project's pipeline for open-source KFP v2.

    Args:
      config: The kubeflow config.

    Returns:
      The pipeline and platform spec.
    """
    return compile_tfx_pipeline(build_tfx_pipeline(config), config)


def write_spec(docs: spec_lib.PipelineDocs, output_path: str) -> str:
    """Writes the rendered spec (byte-identical for equal specs).

    Args:
      docs: The compiled spec.
      output_path: `.yaml` file to write; parent directories are created.

    Returns:
      The path written.

    Raises:
      ValueError: If the path does not end in `.yaml` or `.yml` (what kfp.Client accepts).
    """
    if not output_path.endswith((".yaml", ".yml")):
        raise ValueError(
            f"the spec file must end in .yaml or .yml (kfp.Client's rule), got {output_path!r}"
        )
    os.makedirs(os.path.dirname(os.path.abspath(output_path)), exist_ok=True)
    with open(output_path, "w") as f:
        f.write(spec_lib.render(docs))
    return output_path


def _feed_parameter_from_task(
    typed: spec_lib.TypedSpec,
    config: KubeflowConfig,
    *,
    parameter: str,
    task: str,
    command: Sequence[str],
    args: list[str],
    inputs: dict[str, str],
    output: str,
) -> None:
    """Adds a cheap container task writing `output` and feeds the pipeline parameter from it."""
    spec_lib.add_parameter_task(
        typed,
        task=task,
        image=config.image,
        command=command,
        args=[*args, "--output", f"{{{{$.outputs.parameters['{output}'].output_file}}}}"],
        inputs=inputs,
        output=output,
    )
    rewired = spec_lib.wire_parameter_from_task(
        typed.spec, parameter=parameter, producer=task, output=output
    )
    logging.info("%s now feeds %s", task, rewired)
