"""What the DAG is: the one TFX pipeline, built from typed parameters, with no I/O.

Where it runs lives elsewhere: `pipeline/local_runner.py` (BeamDagRunner) and
`pipeline/kubeflow_v2/` (KFP v2 spec).
"""

from collections.abc import Sequence
from typing import Any

from google.protobuf import message
from tfx import v1 as tfx
from tfx.dsl.components.base import base_node

from components.anomalies_gate.component import AnomaliesGate
from components.evaluator.component import BaselineAwareEvaluator
from components.latest_pushed_model.component import LatestPushedModel
from components.pusher.component import AtomicPusher
from components.trainer.hyperparameters import Hyperparameters
from pipeline.config import EvaluationSettings
from pipeline.evaluation import build_eval_config

PREPROCESSING_FN = "components.transform.preprocessing_fn"
RUN_FN = "components.trainer.run.run_fn"
NODE_IDS = (
    "ExampleGen",
    "StatisticsGen",
    "SchemaImporter",
    "ExampleValidator",
    "AnomaliesGate",
    "Transform",
    "Trainer",
    "LatestPushedModel",
    "Evaluator",
    "Pusher",
)


def create_components(
    *,
    data_root: Any,
    schema_path: str,
    model_dir: str,
    train_steps: Any,
    eval_steps: Any,
    hyperparameters: Hyperparameters,
    evaluation: EvaluationSettings,
    anomalies_policy: str,
    push_provenance: dict[str, str] | None = None,
    trainer_platform_config: message.Message | None = None,
) -> list[base_node.BaseNode]:
    """Builds the pipeline's components, each named with `.with_id()`.

    Args:
      data_root: Prepared data root (`train/*` and `eval/*` CSVs), a str or a
        RuntimeParameter.
      schema_path: Curated schema file as seen by the executors.
      model_dir: `<serving_base>/<model_name>`: TF Serving model base path.
      train_steps: Trainer training steps (int or RuntimeParameter).
      eval_steps: Trainer validation steps (int or RuntimeParameter).
      hyperparameters: Model/training settings passed to run_fn.
      evaluation: TFMA thresholds and slices.
      anomalies_policy: `fail` or `warn` (AnomaliesGate).
      push_provenance: Extra fields recorded in each pushed version's manifest.
      trainer_platform_config: Orchestrator-specific resources for the Trainer (e.g. a KFP
        ResourceSpec with a GPU); None locally.

    Returns:
      Components in topological order.
    """
    example_gen = tfx.components.CsvExampleGen(
        input_base=data_root,
        input_config=tfx.proto.Input(
            splits=[
                tfx.proto.Input.Split(name="train", pattern="train/*"),
                tfx.proto.Input.Split(name="eval", pattern="eval/*"),
            ]
        ),
    ).with_id("ExampleGen")
    statistics_gen = tfx.components.StatisticsGen(examples=example_gen.outputs["examples"]).with_id(
        "StatisticsGen"
    )
    schema_importer = tfx.components.ImportSchemaGen(schema_file=schema_path).with_id(
        "SchemaImporter"
    )
    example_validator = tfx.components.ExampleValidator(
        statistics=statistics_gen.outputs["statistics"],
        schema=schema_importer.outputs["schema"],
    ).with_id("ExampleValidator")
    gate = AnomaliesGate(
        anomalies=example_validator.outputs["anomalies"],
        schema=schema_importer.outputs["schema"],
        policy=anomalies_policy,
    ).with_id("AnomaliesGate")
    transform = tfx.components.Transform(
        examples=example_gen.outputs["examples"],
        schema=gate.outputs["validated_schema"],
        preprocessing_fn=PREPROCESSING_FN,
        # StatisticsGen already profiled the raw data; Transform's own stats would double it.
        disable_statistics=True,
    ).with_id("Transform")
    trainer = tfx.components.Trainer(
        run_fn=RUN_FN,
        examples=transform.outputs["transformed_examples"],
        transform_graph=transform.outputs["transform_graph"],
        schema=gate.outputs["validated_schema"],
        train_args=tfx.proto.TrainArgs(num_steps=train_steps),
        eval_args=tfx.proto.EvalArgs(num_steps=eval_steps),
        custom_config=hyperparameters.to_custom_config(),
    ).with_id("Trainer")
    if trainer_platform_config is not None:
        trainer.with_platform_config(trainer_platform_config)
    baseline = LatestPushedModel(
        candidate_model=trainer.outputs["model"], model_dir=model_dir
    ).with_id("LatestPushedModel")
    evaluator = BaselineAwareEvaluator(
        examples=example_gen.outputs["examples"],
        model=trainer.outputs["model"],
        baseline_model=baseline.outputs["baseline_model"],
        example_splits=["eval"],
        eval_config=build_eval_config(evaluation),
    ).with_id("Evaluator")
    pusher = AtomicPusher(
        model=trainer.outputs["model"],
        model_blessing=evaluator.outputs["blessing"],
        push_destination=tfx.proto.PushDestination(
            filesystem=tfx.proto.PushDestination.Filesystem(base_directory=model_dir)
        ),
        custom_config={"provenance": dict(push_provenance or {})},
    ).with_id("Pusher")
    return [
        example_gen,
        statistics_gen,
        schema_importer,
        example_validator,
        gate,
        transform,
        trainer,
        baseline,
        evaluator,
        pusher,
    ]


def create_pipeline(
    *,
    pipeline_name: str,
    pipeline_root: str,
    data_root: Any,
    schema_path: str,
    model_dir: str,
    train_steps: Any,
    eval_steps: Any,
    hyperparameters: Hyperparameters,
    evaluation: EvaluationSettings,
    anomalies_policy: str = "fail",
    push_provenance: dict[str, str] | None = None,
    beam_pipeline_args: Sequence[str] = (),
    metadata_connection_config: Any = None,
    enable_cache: bool = True,
    trainer_platform_config: message.Message | None = None,
) -> tfx.dsl.Pipeline:
    """Builds the TFX pipeline: ExampleGen -> ... -> Evaluator -> Pusher.

    Args:
      pipeline_name: Pipeline name (MLMD context, KFP pipeline name).
      pipeline_root: Root of all artifacts.
      data_root: See `create_components`.
      schema_path: See `create_components`.
      model_dir: See `create_components`.
      train_steps: See `create_components`.
      eval_steps: See `create_components`.
      hyperparameters: See `create_components`.
      evaluation: See `create_components`.
      anomalies_policy: See `create_components`.
      push_provenance: See `create_components`.
      beam_pipeline_args: Beam arguments for the components' Beam jobs.
      metadata_connection_config: MLMD connection (local runs); None on KFP.
      enable_cache: Reuse outputs of unchanged steps.
      trainer_platform_config: See `create_components`.

    Returns:
      The pipeline.
    """
    return tfx.dsl.Pipeline(
        pipeline_name=pipeline_name,
        pipeline_root=pipeline_root,
        components=create_components(
            data_root=data_root,
            schema_path=schema_path,
            model_dir=model_dir,
            train_steps=train_steps,
            eval_steps=eval_steps,
            hyperparameters=hyperparameters,
            evaluation=evaluation,
            anomalies_policy=anomalies_policy,
            push_provenance=push_provenance,
            trainer_platform_config=trainer_platform_config,
        ),
        enable_cache=enable_cache,
        metadata_connection_config=metadata_connection_config,
        beam_pipeline_args=list(beam_pipeline_args),
    )
