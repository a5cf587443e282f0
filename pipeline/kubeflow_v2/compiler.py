"""Compiles the pipeline for open-source KFP v2: TFX's KubeflowV2DagRunner, then patches."""

import os

from absl import logging

from pipeline.kubeflow_v2 import spec as spec_lib
from pipeline.kubeflow_v2.config import (
    KubeflowConfig,
    parse_node_selector,
    parse_pvc_mounts,
    parse_tolerations,
)

TRAINER = "Trainer"
DATA_ROOT_PARAMETER = "data_root"
# What each step is called in the KFP UI (DAG keys stay the TFX node ids).
TASK_DISPLAY_NAMES = {
    "ExampleGen": "Ingest CSV examples",
    "StatisticsGen": "Compute statistics",
    "SchemaImporter": "Import curated schema",
    "ExampleValidator": "Validate examples",
    "AnomaliesGate": "Stop on anomalies",
    "Transform": "Transform features",
    "Trainer": "Train model (GPU)",
    "LatestPushedModel": "Baseline: latest pushed model",
    "Evaluator": "Evaluate and bless",
    "Pusher": "Push to serving",
}


def trainer_resource_spec(config: KubeflowConfig):  # -> ResourceSpec (kfp proto)
    """Builds the Trainer's platform config: KFP's container ResourceSpec.

    Args:
      config: The kubeflow config.

    Returns:
      `PipelineContainerSpec.ResourceSpec` with CPU/memory limits and requests and, when
      `accelerator_count > 0`, the accelerator type (verbatim: `nvidia.com/gpu` for open-source
      KFP, e.g. `NVIDIA_TESLA_T4` for Vertex AI) and count.
    """
    from kfp.pipeline_spec import pipeline_spec_pb2

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


def build_tfx_pipeline(config: KubeflowConfig):  # -> tfx.dsl.Pipeline
    """Builds the project's TFX pipeline for KFP: `data_root` as a runtime parameter, Trainer GPU.

    Args:
      config: The kubeflow config.

    Returns:
      The TFX pipeline (no MLMD connection: KFP records metadata itself).
    """
    from tfx import v1 as tfx

    from pipeline.pipeline import create_pipeline

    settings = config.settings
    data_root = tfx.dsl.experimental.RuntimeParameter(
        name=DATA_ROOT_PARAMETER, ptype=str, default=config.data_root
    )
    return create_pipeline(
        pipeline_name=settings.pipeline_name,
        pipeline_root=config.pipeline_root,
        data_root=data_root,
        schema_path=config.schema_path,
        model_dir=config.model_dir,
        train_steps=settings.train_steps,
        eval_steps=settings.eval_steps,
        hyperparameters=settings.hyperparameters,
        evaluation=settings.evaluation,
        anomalies_policy=settings.anomalies_policy,
        push_provenance={"orchestrator": "kubeflow-pipelines-v2", "image": config.image},
        beam_pipeline_args=config.beam_pipeline_args,
        enable_cache=config.enable_cache,
        trainer_platform_config=trainer_resource_spec(config),
    )


def compile_tfx_pipeline(tfx_pipeline, config: KubeflowConfig) -> spec_lib.PipelineDocs:
    """Compiles any TFX pipeline with KubeflowV2DagRunner and adapts it to open-source KFP v2.

    Steps: compile with pipeline spec schema 2.1 (`constant` values; the open-source driver
    does not implement 2.0's `constantValue`) and this project's container entrypoint; replace
    the ExampleGen hook; set UI names and parameter defaults; add the Kubernetes section
    (CPU pool for every step, GPU pool + tolerations for the Trainer, PVC mounts); check.

    Args:
      tfx_pipeline: A TFX pipeline.
      config: The kubeflow config (image, placement, display name).

    Returns:
      The pipeline and platform spec.

    Raises:
      UnsupportedConstructError: If the result still holds something open-source KFP v2
        cannot run (e.g. a Resolver node).
    """
    from tfx.orchestration.kubeflow.v2 import kubeflow_v2_dag_runner as runner_lib

    runner_config = runner_lib.KubeflowV2DagRunnerConfig(
        display_name=config.pipeline_display_name,
        default_image=config.image,
        default_commands=list(spec_lib.CONTAINER_COMMAND),
        use_pipeline_spec_2_1=True,
    )
    job = runner_lib.KubeflowV2DagRunner(runner_config).run(tfx_pipeline, write_out=False)
    pipeline_spec = job["pipelineSpec"]
    changed = spec_lib.replace_example_gen_hook(pipeline_spec)
    logging.info("Replaced the ExampleGen driver hook in executors %s", changed)
    tasks = pipeline_spec["root"]["dag"]["tasks"]
    spec_lib.set_display_names(
        pipeline_spec,
        config.pipeline_display_name,
        {k: v for k, v in TASK_DISPLAY_NAMES.items() if k in tasks},
    )
    parameters = pipeline_spec["root"].get("inputDefinitions", {}).get("parameters", {})
    if DATA_ROOT_PARAMETER in parameters:
        spec_lib.set_parameter_defaults(
            pipeline_spec,
            {DATA_ROOT_PARAMETER: config.data_root},
            {DATA_ROOT_PARAMETER: "Prepared data (train/, eval/ CSVs) as the steps see it."},
        )
    pipeline_spec["defaultPipelineRoot"] = config.pipeline_root
    gpu = config.trainer
    platform_spec = spec_lib.build_kubernetes_platform(
        pipeline_spec,
        default_node_selector=parse_node_selector(config.cpu_node_selector, "cpu_node_selector"),
        task_node_selectors=(
            {TRAINER: parse_node_selector(gpu.node_selector, "trainer.node_selector")}
            if TRAINER in tasks
            else {}
        ),
        task_tolerations=(
            {TRAINER: parse_tolerations(gpu.tolerations, "trainer.tolerations")}
            if TRAINER in tasks
            else {}
        ),
        pvc_mounts=parse_pvc_mounts(config.pvc_mounts, "pvc_mounts"),
    )
    docs = spec_lib.PipelineDocs(pipeline_spec, platform_spec)
    spec_lib.check_supported(docs)
    return docs


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
