"""What the DAG is: the one TFX pipeline, built from typed settings, with no I/O.

Where it runs lives elsewhere: `runners/local.py` (BeamDagRunner) and
`runners/kubeflow/` (KFP v2 spec).
"""

from collections.abc import Mapping, Sequence

from google.protobuf import message
from ml_metadata.proto import metadata_store_pb2
from tfx import v1 as tfx
from tfx.dsl.components.base import base_node
from tfx.orchestration import data_types

from components.anomalies_gate.component import AnomaliesGate
from components.data_prep.component import DataPrep, ExampleGen
from components.drift_gate import drift
from components.drift_gate.component import DriftGate
from components.evaluator.component import BaselineAwareEvaluator
from components.latest_pushed_model.component import LatestPushedModel
from components.load_test.component import LoadTest
from components.pusher.component import AtomicPusher
from metadata import lineage_graph
from pipeline.config import PipelineSettings
from pipeline.evaluation import build_eval_config

PREPROCESSING_FN = "model.preprocessing.preprocessing_fn"
RUN_FN = "model.trainer.run.run_fn"
NODE_IDS = (
    "DataPrep",
    "ExampleGen",
    "StatisticsGen",
    "SchemaImporter",
    "ExampleValidator",
    "AnomaliesGate",
    "DriftGate",
    "Transform",
    "Trainer",
    "LatestPushedModel",
    "Evaluator",
    "LoadTest",
    "Pusher",
)
# A str where the value is known when the pipeline is built (local runs), a RuntimeParameter
# where it is given per run (KFP).
StrOrParameter = str | data_types.RuntimeParameter


def create_components(
    settings: PipelineSettings,
    *,
    source_uri: StrOrParameter,
    source_fingerprint: StrOrParameter,
    served_model: StrOrParameter,
    schema_path: str,
    model_dir: str,
    platform_configs: Mapping[str, message.Message] | None = None,
    push_provenance: Mapping[str, str] | None = None,
    baseline_metadata: lineage_graph.MetadataConfig | None = None,
) -> list[base_node.BaseNode]:
    """Builds the pipeline's components, each named with `.with_id()`.

    Args:
      settings: What the pipeline does (split, steps, model, thresholds, anomalies policy).
      source_uri: Source CSVs (a file or a directory) as the executors see them.
      source_fingerprint: `fingerprint_source(source_uri)`: keys the cache on the data.
      served_model: `served_model_identity(model_dir)` when the run started: keys the cache
        of the steps that compare with the served model (LatestPushedModel, DriftGate; the
        Evaluator, LoadTest and Pusher follow through LatestPushedModel's output).
      schema_path: Curated schema file as seen by the executors.
      model_dir: `<serving_base>/<model_name>`: TF Serving model base path.
      platform_configs: Node id -> orchestrator-specific config (e.g. a KFP ResourceSpec with
        a GPU for the Trainer); None locally.
      push_provenance: Extra fields recorded in each pushed version's manifest.
      baseline_metadata: The MLMD store DriftGate reads the served model's lineage from
        (local: the run's SQLite store; KFP: metadata-grpc-service).

    Returns:
      Components in topological order, ids as in `NODE_IDS` (without `LoadTest` when
      `settings.load_test.enabled` is false).

    Raises:
      KeyError: If `platform_configs` names a node the pipeline does not have.
    """
    data_prep = DataPrep(
        source_uri=source_uri,
        source_fingerprint=source_fingerprint,
        eval_fraction=settings.eval_fraction,
        max_rows=settings.max_rows,
    ).with_id("DataPrep")
    example_gen = ExampleGen(prepared_data=data_prep.outputs["prepared_data"]).with_id("ExampleGen")
    statistics_gen = tfx.components.StatisticsGen(
        examples=example_gen.outputs["examples"],
        # Finer histograms than TFDV's default: DriftGate's Jensen-Shannon divergence reads them.
        stats_options=drift.stats_options(),
    ).with_id("StatisticsGen")
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
        policy=settings.anomalies_policy,
    ).with_id("AnomaliesGate")
    drift_gate = DriftGate(
        statistics=statistics_gen.outputs["statistics"],
        schema=gate.outputs["validated_schema"],
        model_dir=model_dir,
        metadata_connection=lineage_graph.encode_connection(baseline_metadata),
        served_model=served_model,
        policy=settings.anomalies_policy,
        # Statistics copies are kept as model versions are.
        keep_baselines=settings.keep_versions,
    ).with_id("DriftGate")
    transform = tfx.components.Transform(
        examples=example_gen.outputs["examples"],
        schema=gate.outputs["validated_schema"],
        preprocessing_fn=PREPROCESSING_FN,
        # StatisticsGen already profiled the raw data; Transform's own stats would double it.
        disable_statistics=True,
        # The Trainer applies the transform graph to raw examples as it reads them: it reads
        # only steps x batch rows, while materializing would transform and write every row of
        # both splits (measured at 150 k rows: most of this step's time).
        materialize=False,
    ).with_id("Transform")
    # Transform (and so the Trainer) runs only after DriftGate passed, but does not take its
    # output: DriftGate is cached on the served model too, and a new artifact from it after
    # every push or rollback would retrain on unchanged data, and push the new model again.
    transform.add_upstream_node(drift_gate)
    trainer = tfx.components.Trainer(
        run_fn=RUN_FN,
        examples=example_gen.outputs["examples"],
        transform_graph=transform.outputs["transform_graph"],
        schema=gate.outputs["validated_schema"],
        train_args=tfx.proto.TrainArgs(num_steps=settings.train_steps),
        eval_args=tfx.proto.EvalArgs(num_steps=settings.eval_steps),
        custom_config=settings.hyperparameters.to_custom_config(),
    ).with_id("Trainer")
    baseline = LatestPushedModel(
        candidate_model=trainer.outputs["model"], model_dir=model_dir, served_model=served_model
    ).with_id("LatestPushedModel")
    evaluator = BaselineAwareEvaluator(
        examples=example_gen.outputs["examples"],
        model=trainer.outputs["model"],
        baseline_model=baseline.outputs["baseline_model"],
        example_splits=["eval"],
        eval_config=build_eval_config(settings.evaluation),
    ).with_id("Evaluator")
    load_test = None
    if settings.load_test.enabled:
        load_test = LoadTest(
            model=trainer.outputs["model"],
            examples=example_gen.outputs["examples"],
            model_blessing=evaluator.outputs["blessing"],
            model_name=settings.model_name,
            settings=settings.load_test,
            example_split="eval",
        ).with_id("LoadTest")
    pusher = AtomicPusher(
        model=trainer.outputs["model"],
        model_blessing=evaluator.outputs["blessing"],
        infra_blessing=load_test.outputs["blessing"] if load_test else None,
        push_destination=tfx.proto.PushDestination(
            filesystem=tfx.proto.PushDestination.Filesystem(base_directory=model_dir)
        ),
        custom_config={
            "provenance": dict(push_provenance or {}),
            # Retention is left out (every version kept) unless configured.
            **({} if settings.keep_versions is None else {"keep_versions": settings.keep_versions}),
        },
    ).with_id("Pusher")
    components = [
        data_prep,
        example_gen,
        statistics_gen,
        schema_importer,
        example_validator,
        gate,
        drift_gate,
        transform,
        trainer,
        baseline,
        evaluator,
        *([load_test] if load_test else []),
        pusher,
    ]
    by_id = {c.id: c for c in components}
    unknown = sorted(set(platform_configs or {}) - set(by_id))
    if unknown:
        raise KeyError(f"platform configs given for nodes {unknown} not in {list(NODE_IDS)}")
    for node_id, config in (platform_configs or {}).items():
        by_id[node_id].with_platform_config(config)
    return components


def create_pipeline(
    settings: PipelineSettings,
    *,
    pipeline_root: str,
    source_uri: StrOrParameter,
    source_fingerprint: StrOrParameter,
    served_model: StrOrParameter,
    schema_path: str,
    model_dir: str,
    beam_pipeline_args: Sequence[str] = (),
    metadata_connection_config: metadata_store_pb2.ConnectionConfig | None = None,
    enable_cache: bool = True,
    platform_configs: Mapping[str, message.Message] | None = None,
    push_provenance: Mapping[str, str] | None = None,
    baseline_metadata: lineage_graph.MetadataConfig | None = None,
) -> tfx.dsl.Pipeline:
    """Builds the TFX pipeline: DataPrep -> ExampleGen -> ... -> Evaluator -> LoadTest -> Pusher.

    Only where-it-runs values are separate arguments; what the pipeline does is `settings`.

    Args:
      settings: What the pipeline does; `settings.pipeline_name` names it.
      pipeline_root: Root of all artifacts.
      source_uri: See `create_components`.
      source_fingerprint: See `create_components`.
      served_model: See `create_components`.
      schema_path: See `create_components`.
      model_dir: See `create_components`.
      beam_pipeline_args: Beam arguments for the components' Beam jobs.
      metadata_connection_config: MLMD connection (local runs); None on KFP.
      enable_cache: Reuse outputs of unchanged steps.
      platform_configs: See `create_components`.
      push_provenance: See `create_components`.
      baseline_metadata: See `create_components`; default `metadata_connection_config`.

    Returns:
      The pipeline.
    """
    return tfx.dsl.Pipeline(
        pipeline_name=settings.pipeline_name,
        pipeline_root=pipeline_root,
        components=create_components(
            settings,
            source_uri=source_uri,
            source_fingerprint=source_fingerprint,
            served_model=served_model,
            schema_path=schema_path,
            model_dir=model_dir,
            platform_configs=platform_configs,
            push_provenance=push_provenance,
            baseline_metadata=baseline_metadata or metadata_connection_config,
        ),
        enable_cache=enable_cache,
        metadata_connection_config=metadata_connection_config,
        beam_pipeline_args=list(beam_pipeline_args),
    )
