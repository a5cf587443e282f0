"""Executor of AnomaliesGate: reads ExampleValidator's anomalies and passes or stops the run."""

import json
import os
from typing import Any

from absl import logging
from tensorflow_metadata.proto.v0 import anomalies_pb2
from tfx import types
from tfx.dsl.components.base import base_executor
from tfx.dsl.io import fileio
from tfx.types import artifact_utils
from tfx.utils import io_utils

from components.anomalies_gate.policies import FAIL
from components.reports.anomalies import anomalies_markdown

ANOMALIES_KEY = "anomalies"
SCHEMA_KEY = "schema"
VALIDATED_SCHEMA_KEY = "validated_schema"
ANOMALIES_REPORT_KEY = "anomalies_report"
POLICY_KEY = "policy"
ANOMALIES_FOUND_PROPERTY = "anomalies_found"
REPORT_PROPERTY = "anomalies_report"
_SCHEMA_FILE = "schema.pbtxt"


class AnomaliesFoundError(RuntimeError):
    """Raised when the data has anomalies and the policy is to stop the run."""


def read_anomalies(anomalies: types.Artifact) -> list[dict[str, str]]:
    """Lists every anomaly of every split of an ExampleAnomalies artifact.

    Args:
      anomalies: ExampleValidator's output artifact.

    Returns:
      One dict per anomaly: split, feature ("" for data-set level), severity, short and long
      reason.
    """
    found = []
    for split in artifact_utils.decode_split_names(anomalies.split_names):
        path = os.path.join(artifact_utils.get_split_uri([anomalies], split), "SchemaDiff.pb")
        proto = anomalies_pb2.Anomalies()
        proto.ParseFromString(io_utils.read_bytes_file(path))
        infos = list(proto.anomaly_info.items())
        if proto.HasField("dataset_anomaly_info"):
            infos.append(("", proto.dataset_anomaly_info))
        for feature, info in sorted(infos):
            found.append(
                {
                    "split": split,
                    "feature": feature,
                    "severity": anomalies_pb2.AnomalyInfo.Severity.Name(info.severity),
                    "short": info.short_description,
                    "description": info.description,
                }
            )
    return found


def format_anomalies(found: list[dict[str, str]]) -> str:
    """One line per anomaly: `split 'eval', feature 'payment_type': <why>`."""
    return "\n".join(
        f"  split {a['split']!r}, feature {a['feature'] or '<data set>'!r}: "
        f"{a['short']} ({a['description']})"
        for a in found
    )


class Executor(base_executor.BaseExecutor):
    """Stops the pipeline on anomalies (policy `fail`) or records them (policy `warn`)."""

    def Do(
        self,
        input_dict: dict[str, list[types.Artifact]],
        output_dict: dict[str, list[types.Artifact]],
        exec_properties: dict[str, Any],
    ) -> None:
        """Checks the anomalies, then passes the schema on to Transform and Trainer.

        Args:
          input_dict: `anomalies` (ExampleAnomalies) and `schema` (Schema).
          output_dict: `validated_schema` (Schema), a copy of the input schema, and
            `anomalies_report` (Markdown), the anomalies as a table for people.
          exec_properties: `policy`: `fail` or `warn`.

        Raises:
          AnomaliesFoundError: If anomalies exist and the policy is `fail`; the message names
            each split, feature and why.
        """
        anomalies = artifact_utils.get_single_instance(input_dict[ANOMALIES_KEY])
        found = read_anomalies(anomalies)
        policy = exec_properties[POLICY_KEY]
        out = artifact_utils.get_single_instance(output_dict[VALIDATED_SCHEMA_KEY])
        out.set_int_custom_property(ANOMALIES_FOUND_PROPERTY, len(found))
        out.set_string_custom_property(REPORT_PROPERTY, json.dumps(found))
        if found:
            message = (
                f"Data validation found {len(found)} anomalies against the curated schema:\n"
                f"{format_anomalies(found)}"
            )
            if policy == FAIL:
                # No report file here: a failed execution has no outputs. TFX's launcher
                # (tfx/orchestration/portable/launcher.py, _run_executor) deletes the output
                # dirs of an executor that raised and publishes none of its artifacts, and
                # KFP's launcher uploads nothing from a failed container; so the error
                # message, shown in the step's log, carries every split, feature and reason.
                raise AnomaliesFoundError(
                    message + "\nThe run stops before Transform and Trainer. Fix the data, or "
                    "update schemas/ after review (make schema-diff), or set anomalies_policy=warn."
                )
            logging.warning("%s\nContinuing because anomalies_policy=warn.", message)
        else:
            logging.info("No anomalies in splits %s.", anomalies.split_names)
        report = artifact_utils.get_single_instance(output_dict[ANOMALIES_REPORT_KEY])
        # A value artifact: setting the value writes the file at its URI.
        report.value = anomalies_markdown(
            found, artifact_utils.decode_split_names(anomalies.split_names), policy
        )
        schema = artifact_utils.get_single_instance(input_dict[SCHEMA_KEY])
        fileio.makedirs(out.uri)
        io_utils.copy_file(
            os.path.join(schema.uri, _SCHEMA_FILE), os.path.join(out.uri, _SCHEMA_FILE), True
        )
