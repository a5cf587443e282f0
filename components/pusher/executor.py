"""Executor of AtomicPusher: copy to a hidden name, then rename into the version number."""

import datetime
import json
import os
import time
import uuid
from typing import Any

from absl import logging
from tfx import types
from tfx.components.pusher import executor as tfx_pusher_executor
from tfx.dsl.io import fileio
from tfx.proto import pusher_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import io_utils, proto_utils

from components import model_dir as model_dir_lib

OUTCOME_PROPERTY = "push_outcome"
PUSHED = "pushed"
NOT_BLESSED = "not_blessed"
ALREADY_SERVING = "already_serving"


def next_version(existing: list[int], now: float) -> int:
    """Returns a Unix-time version strictly newer than every existing one.

    Args:
      existing: Versions already in the model directory.
      now: Current Unix time.

    Returns:
      `int(now)`, or one more than the latest version when the clock is not ahead of it.
    """
    return max([int(now), *(v + 1 for v in existing)])


class Executor(tfx_pusher_executor.Executor):
    """Pushes blessed models atomically and records provenance beside each version."""

    def Do(
        self,
        input_dict: dict[str, list[types.Artifact]],
        output_dict: dict[str, list[types.Artifact]],
        exec_properties: dict[str, Any],
    ) -> None:
        """Pushes the model if blessed; records the outcome on the PushedModel artifact.

        Args:
          input_dict: `model` and `model_blessing`, as for TFX's Pusher.
          output_dict: `pushed_model`.
          exec_properties: `push_destination` (filesystem) and `custom_config`
            (`provenance`: extra fields for the push manifest).
        """
        self._log_startup(input_dict, output_dict, exec_properties)
        model_push = artifact_utils.get_single_instance(
            output_dict[standard_component_specs.PUSHED_MODEL_KEY]
        )
        if not self.CheckBlessing(input_dict):
            self._MarkNotPushed(model_push)
            model_push.set_string_custom_property(OUTCOME_PROPERTY, NOT_BLESSED)
            return
        model = artifact_utils.get_single_instance(input_dict[standard_component_specs.MODEL_KEY])
        model_path = self.GetModelPath(input_dict)
        destination = pusher_pb2.PushDestination()
        proto_utils.json_to_proto(
            exec_properties[standard_component_specs.PUSH_DESTINATION_KEY], destination
        )
        model_dir = destination.filesystem.base_directory

        latest = model_dir_lib.latest_version(model_dir)
        if latest is not None:
            manifest = model_dir_lib.read_manifest(os.path.join(model_dir, str(latest)))
            if manifest.get("model_uri") == model.uri:
                # A re-run re-blessing the same model must not add a duplicate version.
                logging.info("Model %s is already served as version %s.", model.uri, latest)
                self._MarkPushed(model_push, os.path.join(model_dir, str(latest)), str(latest))
                model_push.set_string_custom_property(OUTCOME_PROPERTY, ALREADY_SERVING)
                return

        version = next_version(model_dir_lib.list_versions(model_dir), time.time())
        final_path = os.path.join(model_dir, str(version))
        # Non-numeric hidden name: TF Serving ignores it until the rename makes it a version.
        staging_path = os.path.join(model_dir, f".tmp-{version}-{uuid.uuid4().hex[:8]}")
        io_utils.copy_dir(model_path, staging_path)
        custom_config = json.loads(exec_properties.get("custom_config") or "null") or {}
        manifest = {
            "model_name": os.path.basename(model_dir.rstrip("/")),
            "version": version,
            "pushed_at": datetime.datetime.now(datetime.timezone.utc).isoformat(),
            "model_uri": model.uri,
            "model_artifact_id": model.id,
            "model_blessing_uri": artifact_utils.get_single_uri(
                input_dict[standard_component_specs.MODEL_BLESSING_KEY]
            ),
            "pipeline_run_id": self._context.pipeline_run_id if self._context else None,
            **custom_config.get("provenance", {}),
        }
        manifest_path = os.path.join(staging_path, model_dir_lib.MANIFEST_FILE)
        fileio.makedirs(os.path.dirname(manifest_path))
        io_utils.write_string_file(manifest_path, json.dumps(manifest, indent=2))
        # Atomic on a POSIX filesystem or PVC; on object stores a directory rename is a copy.
        fileio.rename(staging_path, final_path)
        logging.info("Model pushed as version %s at %s.", version, final_path)

        # Archive in the PushedModel artifact too, as TFX's Pusher does, for lineage.
        io_utils.copy_dir(model_path, model_push.uri)
        self._MarkPushed(model_push, pushed_destination=final_path, pushed_version=str(version))
        model_push.set_string_custom_property(OUTCOME_PROPERTY, PUSHED)
