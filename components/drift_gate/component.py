"""DriftGate component: passes the schema on only when new data looks like the served model's."""

from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.orchestration import data_types
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter

from components import ui_artifacts
from components.drift_gate import executor


class DriftGateSpec(ComponentSpec):
    """Inputs, outputs and parameters of DriftGate."""

    PARAMETERS = {
        executor.MODEL_DIR_KEY: ExecutionParameter(type=str),
        executor.METADATA_CONNECTION_KEY: ExecutionParameter(type=str),
        executor.POLICY_KEY: ExecutionParameter(type=str),
        executor.SERVED_MODEL_KEY: ExecutionParameter(type=str),
        executor.KEEP_BASELINES_KEY: ExecutionParameter(type=int, optional=True),
    }
    INPUTS = {
        executor.STATISTICS_KEY: ChannelParameter(type=standard_artifacts.ExampleStatistics),
        executor.SCHEMA_KEY: ChannelParameter(type=standard_artifacts.Schema),
    }
    OUTPUTS = {
        executor.VALIDATED_SCHEMA_KEY: ChannelParameter(type=standard_artifacts.Schema),
        # For people: the KFP UI renders a system.Markdown artifact's file.
        executor.DRIFT_REPORT_KEY: ChannelParameter(type=ui_artifacts.Markdown),
    }


class DriftGate(base_component.BaseComponent):
    """Stops the run when the new training data drifted from the served model's training data.

    The baseline is the data that trained the model being served: the push manifest of the
    served version names the model artifact, and ML-Metadata leads from it to the statistics
    StatisticsGen computed on the same Examples (`lineage_graph`; no TFX Resolver, which
    open-source KFP cannot run). Thresholds live in the curated schema: `drift_comparator`
    (L-infinity for categorical features, Jensen-Shannon divergence for numeric ones), the
    `drift:wasserstein_iqr<=X` annotation tag (scale and shift of a numeric feature: a unit
    change such as miles to km) and `presence.min_fraction`. Before the first push there is
    nothing to compare: outcome `no_baseline`, and the run goes on. Transform runs after this
    gate (an upstream node, see `pipeline.create_components`), so on every orchestrator nothing
    trains on data that failed it; it does not take the gate's output, which changes with the
    served model.
    """

    SPEC_CLASS = DriftGateSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(
        self,
        statistics: types.BaseChannel,
        schema: types.BaseChannel,
        model_dir: str,
        metadata_connection: str,
        served_model: "str | data_types.RuntimeParameter",
        policy: str = executor.FAIL,
        keep_baselines: int | None = None,
    ):
        """Builds the gate.

        Args:
          statistics: StatisticsGen's output for the new data (its train split is compared).
          schema: The schema with the thresholds (AnomaliesGate's `validated_schema`).
          model_dir: `<serving_base>/<model_name>`: where the served version is found.
          metadata_connection: `lineage_graph.encode_connection(...)` of the MLMD store that
            recorded the served model's run ("" = none: a served model then cannot be
            compared, which stops the run under policy `fail`).
          served_model: The served model's identity when the run started
            (`latest_pushed_model.served`): the gate is cached on it, so a push or rollback
            makes it compare again, with what is served then.
          policy: `fail` stops the run on drift; `warn` logs it and goes on.
          keep_baselines: Statistics copies kept under `<model_dir>/.drift_baselines` besides
            those of the versions still in the model directory (as the Pusher's
            `keep_versions`); None keeps all.

        Raises:
          ValueError: If `policy` is not `fail` or `warn`, or `model_dir` is empty.
        """
        if policy not in executor.POLICIES:
            raise ValueError(
                f"DriftGate policy must be one of {executor.POLICIES}, got {policy!r}: use "
                "'fail' to stop runs on drift or 'warn' to only report it."
            )
        if not model_dir:
            raise ValueError(
                "DriftGate needs model_dir = <serving_base>/<model_name>, the directory the "
                f"Pusher writes to (its served version is the baseline); got {model_dir!r}."
            )
        super().__init__(
            spec=DriftGateSpec(
                statistics=statistics,
                schema=schema,
                model_dir=model_dir,
                metadata_connection=metadata_connection,
                policy=policy,
                served_model=served_model,
                keep_baselines=keep_baselines,
                validated_schema=types.Channel(type=standard_artifacts.Schema),
                drift_report=types.Channel(type=ui_artifacts.Markdown),
            )
        )
