"""LatestPushedModel component: an ordinary step in place of TFX's Resolver.

Open-source KFP v2 does not execute resolver tasks, and the baseline that matters is the
model actually being served, so this step reads the serving model directory directly.
"""

from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter

from components.latest_pushed_model import executor


class LatestPushedModelSpec(ComponentSpec):
    """Inputs, outputs and parameters of LatestPushedModel."""

    PARAMETERS = {executor.MODEL_DIR_KEY: ExecutionParameter(type=str)}
    INPUTS = {executor.CANDIDATE_MODEL_KEY: ChannelParameter(type=standard_artifacts.Model)}
    OUTPUTS = {executor.BASELINE_MODEL_KEY: ChannelParameter(type=standard_artifacts.Model)}


class LatestPushedModel(base_component.BaseComponent):
    """Outputs the currently pushed model as the Evaluator's baseline."""

    SPEC_CLASS = LatestPushedModelSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(self, candidate_model: types.BaseChannel, model_dir: str):
        """Builds the step.

        Args:
          candidate_model: The Trainer's model (the baseline before any push).
          model_dir: `<serving_base>/<model_name>`, where the Pusher writes versions.

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
                baseline_model=types.Channel(type=standard_artifacts.Model),
            )
        )
