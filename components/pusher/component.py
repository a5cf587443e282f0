"""AtomicPusher component: TFX's Pusher with an atomic, traceable filesystem push."""

from typing import Any

from tfx import types
from tfx.components import Pusher
from tfx.dsl.components.base import executor_spec
from tfx.proto import pusher_pb2

from components.pusher import executor


class AtomicPusher(Pusher):
    """Pushes blessed models to `<base_directory>/<version>/`, never visible half-written.

    Same inputs, outputs and validation as TFX's Pusher (a filesystem `push_destination` is
    required). Differences: the copy lands under a hidden name and is renamed into place; each
    version carries `assets.extra/push_manifest.json` (source model, blessing, run); a re-run
    that re-blesses the model already served adds no duplicate version.
    """

    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(
        self,
        model: types.BaseChannel,
        model_blessing: types.BaseChannel,
        push_destination: pusher_pb2.PushDestination,
        custom_config: dict[str, Any] | None = None,
    ):
        """Builds the pusher.

        Args:
          model: The Trainer's model.
          model_blessing: The Evaluator's blessing; unblessed models are never pushed.
          push_destination: A filesystem destination whose base_directory is
            `<serving_base>/<model_name>`.
          custom_config: Optional `{"provenance": {...}}` merged into each push manifest.

        Raises:
          ValueError: If the destination is not a filesystem with a base directory.
        """
        if (
            push_destination.WhichOneof("destination") != "filesystem"
            or not push_destination.filesystem.base_directory
        ):
            raise ValueError(
                "AtomicPusher needs push_destination.filesystem.base_directory set to "
                f"<serving_base>/<model_name>; got {push_destination}"
            )
        super().__init__(
            model=model,
            model_blessing=model_blessing,
            push_destination=push_destination,
            custom_config=custom_config,
        )
