"""Executor of AtomicPusher: TFX's Pusher executor with the push done by `model_contract`."""

import json
import os
import time
import uuid
from collections.abc import Mapping
from typing import Any

import tensorflow as tf
from absl import logging
from tfx import types
from tfx.components.pusher import executor as tfx_pusher_executor
from tfx.components.util import model_utils
from tfx.proto import pusher_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import io_utils, proto_utils

import model_contract
from components.pusher.retention import KEEP_VERSIONS_KEY, keep_versions_of
from components.reports.markdown import Document

PUSH_REPORT_KEY = "push_report"
PROVENANCE_KEY = "provenance"
CUSTOM_CONFIG_KEYS = (PROVENANCE_KEY, KEEP_VERSIONS_KEY)
OUTCOME_PROPERTY = "push_outcome"
PUSHED = model_contract.PUSHED
NOT_BLESSED = "not_blessed"
# The pre-push load test (LoadTest's InfraBlessing) did not bless the model.
NOT_INFRA_BLESSED = "not_infra_blessed"
INFRA_REASON_PROPERTY = "reason"
ALREADY_SERVING = model_contract.ALREADY_SERVING
# Unix-time versions are what TF Serving needs (it serves the highest number); TFX's AUTO
# means UNIX_TIMESTAMP for a filesystem destination (tfx/components/pusher/executor.py).
SUPPORTED_VERSIONING = (pusher_pb2.Versioning.AUTO, pusher_pb2.Versioning.UNIX_TIMESTAMP)


def model_dir_of(destination: pusher_pb2.PushDestination) -> str:
    """Returns the model directory of a supported push destination.

    Raises:
      ValueError: If it is not a filesystem destination with a base directory and Unix-time
        versioning, saying what to set.
    """
    if destination.WhichOneof("destination") != "filesystem" or not (
        destination.filesystem.base_directory
    ):
        raise ValueError(
            "AtomicPusher needs push_destination.filesystem.base_directory set to "
            f"<serving_base>/<model_name>; got {destination}"
        )
    versioning = destination.filesystem.versioning
    if versioning not in SUPPORTED_VERSIONING:
        raise ValueError(
            "AtomicPusher writes Unix-time versions (TF Serving serves the highest number): "
            "leave push_destination.filesystem.versioning unset (AUTO) or set it to "
            f"UNIX_TIMESTAMP; got versioning {versioning}."
        )
    return destination.filesystem.base_directory


def provenance_of(custom_config: Mapping[str, Any] | None) -> dict[str, str]:
    """Returns the provenance fields of the Pusher's custom_config.

    Raises:
      ValueError: If custom_config has keys other than `provenance`, or provenance is not a
        mapping of names to strings.
    """
    config = dict(custom_config or {})
    unknown = sorted(set(config) - set(CUSTOM_CONFIG_KEYS))
    if unknown:
        raise ValueError(
            f"AtomicPusher reads only custom_config['{PROVENANCE_KEY}'] (fields for the push "
            f"manifest) and custom_config['{KEEP_VERSIONS_KEY}'] (retention); got keys "
            f"{unknown}. Pushing to a cloud serving platform is the job of TFX's extension "
            "Pushers (tfx.extensions), not of this one."
        )
    provenance = config.get(PROVENANCE_KEY) or {}
    if not isinstance(provenance, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in provenance.items()
    ):
        raise ValueError(
            f"custom_config['{PROVENANCE_KEY}'] must map field names to strings, got {provenance!r}"
        )
    return dict(provenance)


def render_push_report(
    outcome: str, model_dir: str, manifest: Mapping[str, Any], version: int | None
) -> str:
    """Returns the Markdown push report: what happened, where, and from what.

    Args:
      outcome: `pushed`, `already_serving`, `not_blessed` or `not_infra_blessed`.
      model_dir: The destination `<serving_base>/<model_name>`.
      manifest: Provenance (the push manifest when a version holds the model).
      version: The version now holding the model; None when not pushed.

    Returns:
      A Markdown document.
    """
    headline = {
        PUSHED: f"Pushed as version {version}",
        ALREADY_SERVING: f"Not pushed again: this model is already served as version {version}",
        NOT_BLESSED: (
            "Not pushed: the Evaluator did not bless this model (its validation result says "
            "which threshold failed)"
        ),
        NOT_INFRA_BLESSED: "Not pushed: the pre-push load test did not bless this model",
    }[outcome]
    rows = [
        ("outcome", outcome),
        ("version", "none" if version is None else version),
        ("destination", model_dir if version is None else os.path.join(model_dir, str(version))),
        ("model artifact", manifest.get("model_uri")),
        ("model artifact id", manifest.get("model_artifact_id")),
        ("blessing", manifest.get("model_blessing_uri")),
        ("load test", manifest.get("infra_blessing_uri")),
        ("pipeline run", manifest.get("pipeline_run_id")),
        ("data version", manifest.get("data_version")),
    ]
    if version is not None:
        rows.append(("pushed at", manifest.get("pushed_at")))
    known = {"model_uri", "model_artifact_id", "model_blessing_uri", "pipeline_run_id"}
    known |= {"infra_blessing_uri"}
    known |= {"data_version", "pushed_at", "version", "model_name"}
    rows += [(name, value) for name, value in sorted(manifest.items()) if name not in known]
    return str(
        Document()
        .heading(headline)
        .table(
            ["", ""], [(name, "unknown" if value in (None, "") else value) for name, value in rows]
        )
    )


class Executor(tfx_pusher_executor.Executor):
    """Pushes blessed models atomically and records provenance beside each version."""

    def Do(
        self,
        input_dict: dict[str, list[types.Artifact]],
        output_dict: dict[str, list[types.Artifact]],
        exec_properties: dict[str, Any],
    ) -> None:
        """Pushes the model if blessed; records the outcome and writes the push report.

        Args:
          input_dict: `model`, `model_blessing` and optionally `infra_blessing`, as for TFX's
            Pusher.
          output_dict: `pushed_model`, and `push_report` (Markdown).
          exec_properties: `push_destination` (filesystem) and `custom_config`
            (`provenance`: extra fields for the push manifest).

        Raises:
          ValueError: If the destination or custom_config is not supported.
        """
        self._log_startup(input_dict, output_dict, exec_properties)
        destination = pusher_pb2.PushDestination()
        proto_utils.json_to_proto(
            exec_properties[standard_component_specs.PUSH_DESTINATION_KEY], destination
        )
        model_dir = model_dir_of(destination)
        manifest = self._manifest(input_dict, exec_properties)
        model_push = artifact_utils.get_single_instance(
            output_dict[standard_component_specs.PUSHED_MODEL_KEY]
        )
        if not self.CheckBlessing(input_dict):
            self._MarkNotPushed(model_push)
            outcome, why = self._not_blessed_outcome(input_dict)
            self._write_report(output_dict, outcome, model_dir, {**manifest, **why}, None)
            model_push.set_string_custom_property(OUTCOME_PROPERTY, outcome)
            return
        model_path = self.GetModelPath(input_dict)
        config = json.loads(exec_properties.get(standard_component_specs.CUSTOM_CONFIG_KEY) or "{}")
        result = model_contract.push_version(
            tf.io.gfile,
            model_dir,
            model_path,
            manifest,
            now=time.time(),
            token=uuid.uuid4().hex,
            keep_versions=keep_versions_of(config),
        )
        logging.info("Push of %s: %s, version %s.", model_path, result.outcome, result.version)
        if result.removed_staging or result.retired:
            logging.info(
                "Cleaned %s: dead pushes' staging copies %s, retired versions %s.",
                model_dir,
                list(result.removed_staging),
                list(result.retired),
            )
        if result.outcome == PUSHED:
            # Archived in the PushedModel artifact too, as TFX's Pusher does, for lineage.
            io_utils.copy_dir(model_path, model_push.uri)
        self._MarkPushed(
            model_push, pushed_destination=result.path, pushed_version=str(result.version)
        )
        model_push.set_string_custom_property(OUTCOME_PROPERTY, result.outcome)
        self._write_report(output_dict, result.outcome, model_dir, result.manifest, result.version)

    def _not_blessed_outcome(
        self, input_dict: dict[str, list[types.Artifact]]
    ) -> tuple[str, dict[str, str]]:
        """Which blessing is missing (the Evaluator's first), and the load test's reason."""
        evaluation = input_dict[standard_component_specs.MODEL_BLESSING_KEY]
        if not model_utils.is_model_blessed(artifact_utils.get_single_instance(evaluation)):
            return NOT_BLESSED, {}
        infra = artifact_utils.get_single_instance(
            input_dict[standard_component_specs.INFRA_BLESSING_KEY]
        )
        reason = infra.get_string_custom_property(INFRA_REASON_PROPERTY) or "none recorded"
        return NOT_INFRA_BLESSED, {"load test result": reason}

    def _manifest(
        self, input_dict: dict[str, list[types.Artifact]], exec_properties: dict[str, Any]
    ) -> dict[str, Any]:
        """The push manifest's provenance: model, blessing, run and custom_config's fields."""
        config = json.loads(exec_properties.get(standard_component_specs.CUSTOM_CONFIG_KEY) or "{}")
        model = artifact_utils.get_single_instance(input_dict[standard_component_specs.MODEL_KEY])
        infra = input_dict.get(standard_component_specs.INFRA_BLESSING_KEY)
        return {
            "model_uri": model.uri,
            "model_artifact_id": model.id,
            "model_blessing_uri": artifact_utils.get_single_uri(
                input_dict[standard_component_specs.MODEL_BLESSING_KEY]
            ),
            "pipeline_run_id": self._context.pipeline_run_id if self._context else None,
            **({"infra_blessing_uri": artifact_utils.get_single_uri(infra)} if infra else {}),
            **provenance_of(config),
        }

    def _write_report(
        self,
        output_dict: dict[str, list[types.Artifact]],
        outcome: str,
        model_dir: str,
        manifest: Mapping[str, Any],
        version: int | None,
    ) -> None:
        report = artifact_utils.get_single_instance(output_dict[PUSH_REPORT_KEY])
        tf.io.gfile.makedirs(os.path.dirname(report.uri))
        report.write(render_push_report(outcome, model_dir, manifest, version))
