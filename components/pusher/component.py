"""AtomicPusher component: TFX's Pusher with an atomic, traceable filesystem push."""

from typing import Any

from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.proto import pusher_pb2
from tfx.types import standard_artifacts, standard_component_specs
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter
from tfx.types.system_executions import Deploy
from tfx.utils import json_utils

from components import ui_artifacts
from components.pusher import executor, retention


class AtomicPusherSpec(ComponentSpec):
    """TFX's PusherSpec (model, model blessing, optional infra blessing) and a Markdown push
    report."""

    PARAMETERS = {
        standard_component_specs.PUSH_DESTINATION_KEY: ExecutionParameter(
            type=pusher_pb2.PushDestination
        ),
        standard_component_specs.CUSTOM_CONFIG_KEY: ExecutionParameter(type=str, optional=True),
    }
    INPUTS = {
        standard_component_specs.MODEL_KEY: ChannelParameter(type=standard_artifacts.Model),
        standard_component_specs.MODEL_BLESSING_KEY: ChannelParameter(
            type=standard_artifacts.ModelBlessing
        ),
        # The pre-push load test's verdict (LoadTest), read as TFX's Pusher reads
        # InfraValidator's.
        standard_component_specs.INFRA_BLESSING_KEY: ChannelParameter(
            type=standard_artifacts.InfraBlessing, optional=True
        ),
    }
    OUTPUTS = {
        standard_component_specs.PUSHED_MODEL_KEY: ChannelParameter(
            type=standard_artifacts.PushedModel
        ),
        executor.PUSH_REPORT_KEY: ChannelParameter(type=ui_artifacts.Markdown),
    }
    TYPE_ANNOTATION = Deploy


class AtomicPusher(base_component.BaseComponent):
    """Pushes blessed models to `<base_directory>/<version>/`, never visible half-written.

    TFX's Pusher inputs, parameters and `pushed_model` output (same custom properties), with
    the push done by `model_contract.push_version`: the copy lands under a hidden name and is
    renamed into place; each version carries `assets.extra/push_manifest.json` (source model,
    blessing, run, data version); a re-run that re-blesses the model already served adds no
    duplicate version. `push_report` (Markdown, shown by the KFP UI) says what happened.
    """

    SPEC_CLASS = AtomicPusherSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(
        self,
        model: types.BaseChannel,
        model_blessing: types.BaseChannel,
        push_destination: pusher_pb2.PushDestination,
        custom_config: dict[str, Any] | None = None,
        infra_blessing: types.BaseChannel | None = None,
    ):
        """Builds the pusher.

        Args:
          model: The Trainer's model.
          model_blessing: The Evaluator's blessing; unblessed models are never pushed.
          push_destination: A filesystem destination whose base_directory is
            `<serving_base>/<model_name>`; versioning AUTO or UNIX_TIMESTAMP.
          custom_config: Optional `{"provenance": {field: value}}` added to each push
            manifest and report (e.g. `data_version`), and `{"keep_versions": N}`: after a
            push, delete all but the newest N versions (the served one always stays).

        Raises:
          ValueError: If the destination, its versioning or custom_config is not supported,
            saying what to set instead.
        """
        executor.model_dir_of(push_destination)
        executor.provenance_of(custom_config)
        retention.keep_versions_of(custom_config)
        super().__init__(
            spec=AtomicPusherSpec(
                model=model,
                model_blessing=model_blessing,
                infra_blessing=infra_blessing,
                push_destination=push_destination,
                custom_config=json_utils.dumps(custom_config),
                pushed_model=types.Channel(type=standard_artifacts.PushedModel),
                push_report=types.Channel(type=ui_artifacts.Markdown),
            )
        )
