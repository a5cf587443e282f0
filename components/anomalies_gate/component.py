"""AnomaliesGate component: passes the schema downstream only when the data is valid."""

from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter

from components import ui_artifacts
from components.anomalies_gate import executor, policies


class AnomaliesGateSpec(ComponentSpec):
    """Inputs, outputs and parameters of AnomaliesGate."""

    PARAMETERS = {executor.POLICY_KEY: ExecutionParameter(type=str)}
    INPUTS = {
        executor.ANOMALIES_KEY: ChannelParameter(type=standard_artifacts.ExampleAnomalies),
        executor.SCHEMA_KEY: ChannelParameter(type=standard_artifacts.Schema),
    }
    OUTPUTS = {
        executor.VALIDATED_SCHEMA_KEY: ChannelParameter(type=standard_artifacts.Schema),
        # For people: the KFP UI renders a system.Markdown artifact's file.
        executor.ANOMALIES_REPORT_KEY: ChannelParameter(type=ui_artifacts.Markdown),
    }


class AnomaliesGate(base_component.BaseComponent):
    """Stops the run when ExampleValidator found anomalies (or only warns).

    ExampleValidator records anomalies but never fails. The gate also writes them as a
    Markdown table (`anomalies_report`) the Kubeflow Pipelines UI shows. Transform and
    Trainer consume this component's `validated_schema` instead of the imported schema, so on
    every orchestrator (Beam locally, KFP) nothing trains on data that failed validation.
    """

    SPEC_CLASS = AnomaliesGateSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(
        self, anomalies: types.BaseChannel, schema: types.BaseChannel, policy: str = policies.FAIL
    ):
        """Builds the gate.

        Args:
          anomalies: ExampleValidator's `anomalies` output.
          schema: The schema the data was validated against.
          policy: `fail` stops the run on any anomaly; `warn` logs them and goes on.

        Raises:
          ValueError: If `policy` is not `fail` or `warn`.
        """
        if policy not in policies.POLICIES:
            raise ValueError(
                f"AnomaliesGate policy must be one of {policies.POLICIES}, got {policy!r}: use "
                "'fail' to stop runs on anomalies or 'warn' to only log them."
            )
        super().__init__(
            spec=AnomaliesGateSpec(
                anomalies=anomalies,
                schema=schema,
                policy=policy,
                validated_schema=types.Channel(type=standard_artifacts.Schema),
                anomalies_report=types.Channel(type=ui_artifacts.Markdown),
            )
        )
