"""LatestPushedModel component: an ordinary step in place of TFX's Resolver.

Open-source KFP v2 does not execute resolver tasks, and the baseline that matters is the
model actually being served, so this step reads the serving model directory directly.
"""

from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.orchestration import data_types
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter

from components.latest_pushed_model import executor


class LatestPushedModelSpec(ComponentSpec):
    """Inputs, outputs and parameters of LatestPushedModel."""

    PARAMETERS = {
        executor.MODEL_DIR_KEY: ExecutionParameter(type=str),
        executor.SERVED_MODEL_KEY: ExecutionParameter(type=str),
    }
    INPUTS = {executor.CANDIDATE_MODEL_KEY: ChannelParameter(type=standard_artifacts.Model)}
    OUTPUTS = {executor.BASELINE_MODEL_KEY: ChannelParameter(type=standard_artifacts.Model)}


class LatestPushedModel(base_component.BaseComponent):
    """Outputs the currently pushed model as the Evaluator's baseline.

    Cached on `served_model` (the served model's identity when the run started, see
    `served.served_model_identity`): with the same candidate and the same served model the
    baseline artifact is reused, so the Evaluator and LoadTest after it come from the cache
    too; a push or rollback changes the identity and they run again.
    """

    SPEC_CLASS = LatestPushedModelSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(
        self,
        candidate_model: types.BaseChannel,
        model_dir: str,
        served_model: "str | data_types.RuntimeParameter",
    ):
        """Builds the step.

        Args:
          candidate_model: The Trainer's model (the baseline before any push).
          model_dir: `<serving_base>/<model_name>`, where the Pusher writes versions.
          served_model: `served.served_model_identity(model_dir)` when the run started (KFP:
            the `ServedModel` task's output); the step fails if it no longer holds.

        Raises:
          ValueError: If `model_dir` is empty.
        """
        if not model_dir:
            raise ValueError(
                "LatestPushedModel needs model_dir = <serving_base>/<model_name>, the directory "
                f"the Pusher writes to; got {model_dir!r}."
            )
        super().__init__(
            spec=LatestPushedModelSpec(
                candidate_model=candidate_model,
                model_dir=model_dir,
                served_model=served_model,
                baseline_model=types.Channel(type=standard_artifacts.Model),
            )
        )
