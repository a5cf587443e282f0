"""Executor of DriftGate: compares new training data with the served model's; passes or stops."""

import dataclasses
import hashlib
import json
import os
from typing import Any

import tensorflow as tf
import tensorflow_data_validation as tfdv
from absl import logging
from tensorflow_metadata.proto.v0 import statistics_pb2
from tfx import types
from tfx.dsl.components.base import base_executor
from tfx.dsl.io import fileio
from tfx.types import artifact_utils
from tfx.utils import io_utils

import model_contract
from components.drift_gate import drift, retention
from components.latest_pushed_model import served
from components.reports import markdown
from metadata import lineage_graph

STATISTICS_KEY = "statistics"
SCHEMA_KEY = "schema"
VALIDATED_SCHEMA_KEY = "validated_schema"
DRIFT_REPORT_KEY = "drift_report"
MODEL_DIR_KEY = "model_dir"
METADATA_CONNECTION_KEY = "metadata_connection"
POLICY_KEY = "policy"
SERVED_MODEL_KEY = "served_model"
KEEP_BASELINES_KEY = "keep_baselines"
FAIL = "fail"
WARN = "warn"
POLICIES = (FAIL, WARN)
TRAIN_SPLIT = "train"

# Custom properties of `validated_schema` (read by the run summary and `lineage`).
OUTCOME_PROPERTY = "drift_outcome"
BASELINE_VERSION_PROPERTY = "drift_baseline_version"
BASELINE_STATISTICS_PROPERTY = "drift_baseline_statistics"
CHECKS_PROPERTY = "drift_checks"
# Outcomes: what the gate could compare, and what it found.
PASSED = "passed"
DRIFTED = "drifted"
NO_BASELINE = "no_baseline"
BASELINE_UNAVAILABLE = "baseline_unavailable"
_SCHEMA_FILE = "schema.pbtxt"
# Copies of passed statistics under the model directory (TF Serving ignores non-numeric names).
# On KFP with a minio:// or s3:// pipeline root a step cannot read an artifact that is not one
# of its inputs (tf.io.gfile has no such filesystem; the launcher downloads inputs only), so the
# gate keeps the train statistics it passed where every step can read: the serving base.
BASELINES_DIR = ".drift_baselines"


class DriftGateError(RuntimeError):
    """The gate stops the run (policy `fail`); the message says which feature and why."""


class DriftDetectedError(DriftGateError):
    """New training data drifted from the served model's, or a column is (nearly) gone."""


class BaselineUnavailableError(DriftGateError):
    """A model is served but the data it learned from cannot be found: nothing to compare."""


def load_split_statistics(uri: str, split: str) -> statistics_pb2.DatasetFeatureStatisticsList:
    """Reads one split of a StatisticsGen output (`<uri>/Split-<split>/FeatureStats.pb`)."""
    return tfdv.load_stats_binary(os.path.join(uri, f"Split-{split}", "FeatureStats.pb"))


def baseline_copy_path(model_dir: str, statistics_uri: str) -> str:
    """Where the gate keeps a readable copy of the train statistics at `statistics_uri`.

    Keyed by the URI as ML-Metadata records it (a KFP mount path maps back to its
    object-store URI), so a later run finds it from the lineage alone.
    """
    recorded = lineage_graph.uri_candidates(statistics_uri)[-1]
    key = hashlib.sha256(recorded.encode("utf-8")).hexdigest()[:16]
    return os.path.join(model_dir, BASELINES_DIR, key, f"Split-{TRAIN_SPLIT}", "FeatureStats.pb")


def _readable(path: str) -> bool:
    try:
        return bool(tf.io.gfile.exists(path))
    except tf.errors.OpError:  # e.g. "File system scheme 'minio' not implemented".
        return False


def baseline_statistics(
    metadata_connection: str, model_dir: str, version: int
) -> tuple[statistics_pb2.DatasetFeatureStatisticsList, str]:
    """Statistics of the training split that trained a served version, found through MLMD.

    Args:
      metadata_connection: `lineage_graph.encode_connection` of the pipeline's MLMD store.
      model_dir: The serving model directory.
      version: The served version.

    Returns:
      The train-split statistics and the URI of their artifact.

    Raises:
      lineage_graph.LineageError: If the manifest, the store or a link of the chain is missing.
    """
    statistics_uri = training_statistics_uri(metadata_connection, model_dir, version)
    direct = os.path.join(statistics_uri, f"Split-{TRAIN_SPLIT}", "FeatureStats.pb")
    copy = baseline_copy_path(model_dir, statistics_uri)
    for path in (direct, copy):
        if _readable(path):
            return tfdv.load_stats_binary(path), statistics_uri
    raise lineage_graph.LineageError(
        f"the statistics {statistics_uri} are not readable from this step, and no copy is at "
        f"{copy} (written by the gate of the run that trained the model)"
    )


def training_statistics_uri(metadata_connection: str, model_dir: str, version: int) -> str:
    """The URI of the statistics of the data that trained a version, found through MLMD.

    Raises:
      lineage_graph.LineageError: If the manifest, the store or a link of the chain is missing.
    """
    manifest = model_contract.read_manifest(tf.io.gfile, os.path.join(model_dir, str(version)))
    if not manifest:
        raise lineage_graph.LineageError(f"version {version} has no push manifest")
    try:
        store = lineage_graph.connect(metadata_connection)
        chain = lineage_graph.training_chain(store, lineage_graph.find_model(store, manifest))
        return str(lineage_graph.statistics_of(store, chain.examples).uri)
    except lineage_graph.LineageError:
        raise
    except Exception as e:  # MLMD client errors (unreachable server, bad store) are untyped.
        raise lineage_graph.LineageError(f"ML-Metadata query failed: {e}") from e


def retire_baseline_copies(
    model_dir: str, metadata_connection: str, keep: int, current_uri: str
) -> list[str]:
    """Applies retention to the statistics copies, keeping those of every version still in
    `model_dir` (a rollback may serve it again) and the one of `current_uri`."""

    def copy_folder(statistics_uri: str) -> str:
        # <model_dir>/.drift_baselines/<key>/Split-train/FeatureStats.pb -> <key> folder.
        return os.path.dirname(os.path.dirname(baseline_copy_path(model_dir, statistics_uri)))

    protect = {copy_folder(current_uri)}
    for version in model_contract.list_versions(tf.io.gfile, model_dir):
        try:
            protect.add(
                copy_folder(training_statistics_uri(metadata_connection, model_dir, version))
            )
        except lineage_graph.LineageError as e:  # No lineage: no copy of it can be found either.
            logging.info("Version %s keeps no statistics copy: %s", version, e)
    root = os.path.join(model_dir, BASELINES_DIR)
    return retention.retire_baseline_copies(root, keep=keep, protect=protect)


def keep_baseline_copy(model_dir: str, statistics_uri: str) -> None:
    """Writes a readable copy of the train statistics the gate passed (atomically)."""
    path = baseline_copy_path(model_dir, statistics_uri)
    if _readable(path):
        return
    fileio.makedirs(os.path.dirname(path))
    staging = f"{path}.tmp-{os.getpid()}"
    io_utils.copy_file(
        os.path.join(statistics_uri, f"Split-{TRAIN_SPLIT}", "FeatureStats.pb"), staging, True
    )
    fileio.rename(staging, path, overwrite=True)


def report_markdown(
    outcome: str, policy: str, checks: list[drift.FeatureCheck], baseline: str
) -> str:
    """The gate's report for people (the KFP UI renders it)."""
    failed = [c for c in checks if not c.passed]
    headline: tuple[markdown.Part, ...] = {
        PASSED: ("Passed: no feature drifted beyond its threshold.",),
        DRIFTED: (
            markdown.bold(f"{len(failed)} check(s) failed"),
            " (policy ",
            markdown.code(policy),
            ").",
        ),
        NO_BASELINE: ("No model is served yet: nothing to compare with; presence floors only.",),
        BASELINE_UNAVAILABLE: (
            markdown.bold("Baseline unavailable"),
            " (policy ",
            markdown.code(policy),
            f"): {baseline}",
        ),
    }[outcome]
    doc = (
        markdown.Document()
        .heading("Drift and presence gate")
        .paragraph(*headline)
        .paragraph(f"Baseline: {baseline}")
        .paragraph(
            "New training data (StatisticsGen, train split) against the training data of the "
            "served model. Thresholds: ",
            markdown.code("schemas/taxi/schema.pbtxt"),
            " (",
            markdown.code("drift_comparator"),
            ", ",
            markdown.code("presence.min_fraction"),
            ").",
        )
    )
    return str(drift.add_checks_table(doc, checks))


class Executor(base_executor.BaseExecutor):
    """Stops the run on drift or missing data (policy `fail`) or reports it (policy `warn`)."""

    def Do(
        self,
        input_dict: dict[str, list[types.Artifact]],
        output_dict: dict[str, list[types.Artifact]],
        exec_properties: dict[str, Any],
    ) -> None:
        """Compares, reports, then passes the schema on to Transform and Trainer.

        Args:
          input_dict: `statistics` (ExampleStatistics of the new data), `schema` (Schema).
          output_dict: `validated_schema` (Schema, a copy of the input) and `drift_report`
            (Markdown).
          exec_properties: `model_dir`, `metadata_connection`, `policy` (`fail` or `warn`),
            `served_model` (the served model's identity when the run started) and
            `keep_baselines` (retention of the statistics copies; None keeps all).

        Raises:
          DriftDetectedError: If a check fails and the policy is `fail`; the message names
            each feature, measure, value and threshold.
          BaselineUnavailableError: If a model is served but its training data cannot be
            found, and the policy is `fail` (never a silent pass).
        """
        policy = exec_properties[POLICY_KEY]
        model_dir = exec_properties[MODEL_DIR_KEY]
        # Cached on the served model's identity: compare with exactly the model it names
        # (the component always passes it; a direct executor call may leave it out).
        if exec_properties.get(SERVED_MODEL_KEY) is not None:
            served.check_unchanged(
                tf.io.gfile, model_dir, exec_properties[SERVED_MODEL_KEY], "DriftGate"
            )
        statistics = artifact_utils.get_single_instance(input_dict[STATISTICS_KEY])
        schema_artifact = artifact_utils.get_single_instance(input_dict[SCHEMA_KEY])
        schema = tfdv.load_schema_text(os.path.join(schema_artifact.uri, _SCHEMA_FILE))
        current = load_split_statistics(statistics.uri, TRAIN_SPLIT)
        out = artifact_utils.get_single_instance(output_dict[VALIDATED_SCHEMA_KEY])

        version = model_contract.latest_version(tf.io.gfile, model_dir)
        checks: list[drift.FeatureCheck]
        if version is None:
            outcome = NO_BASELINE
            baseline = f"none (no version in {model_dir} yet)"
            checks = drift.presence_checks(current, schema)
        else:
            try:
                previous, previous_uri = baseline_statistics(
                    exec_properties[METADATA_CONNECTION_KEY], model_dir, version
                )
            except lineage_graph.LineageError as e:
                outcome = BASELINE_UNAVAILABLE
                baseline = f"served version {version}, whose training data cannot be found: {e}"
                checks = drift.presence_checks(current, schema)
            else:
                baseline = f"served version {version}, statistics {previous_uri}"
                checks = drift.compare_statistics(current, previous, schema)
                out.set_string_custom_property(BASELINE_STATISTICS_PROPERTY, previous_uri)
                outcome = DRIFTED if any(not c.passed for c in checks) else PASSED
            out.set_string_custom_property(BASELINE_VERSION_PROPERTY, str(version))
        if outcome != BASELINE_UNAVAILABLE and any(not c.passed for c in checks):
            outcome = DRIFTED
        out.set_string_custom_property(OUTCOME_PROPERTY, outcome)
        out.set_string_custom_property(
            CHECKS_PROPERTY,
            json.dumps([dataclasses.asdict(c) | {"passed": c.passed} for c in checks]),
        )
        self._stop_or_warn(outcome, policy, checks, baseline)

        report = artifact_utils.get_single_instance(output_dict[DRIFT_REPORT_KEY])
        # A value artifact: setting the value writes the file at its URI.
        report.value = report_markdown(outcome, policy, checks, baseline)
        keep_baseline_copy(model_dir, statistics.uri)
        keep = exec_properties.get(KEEP_BASELINES_KEY)
        if keep is not None:
            retired = retire_baseline_copies(
                model_dir, exec_properties[METADATA_CONNECTION_KEY], int(keep), statistics.uri
            )
            logging.info("Retired statistics copies: %s", retired or "none")
        fileio.makedirs(out.uri)
        io_utils.copy_file(
            os.path.join(schema_artifact.uri, _SCHEMA_FILE),
            os.path.join(out.uri, _SCHEMA_FILE),
            True,
        )

    @staticmethod
    def _stop_or_warn(
        outcome: str, policy: str, checks: list[drift.FeatureCheck], baseline: str
    ) -> None:
        failed = [c for c in checks if not c.passed]
        if outcome == BASELINE_UNAVAILABLE:
            message = f"Drift gate cannot compare with {baseline}"
            if policy == FAIL:
                # No silent pass: a gate that cannot see the baseline must say so and stop.
                raise BaselineUnavailableError(
                    message + ". Fix the ML-Metadata connection (KFP: metadata_grpc_host/port), "
                    "or set anomalies_policy=warn for this run."
                )
            logging.warning("%s\nContinuing because anomalies_policy=warn.", message)
        if failed:
            message = (
                f"Drift gate against {baseline}: {len(failed)} check(s) failed:\n"
                + "\n".join(f"  {c.describe()}" for c in failed)
            )
            if policy == FAIL:
                # No report artifact on failure: TFX's and KFP's launchers publish no outputs of
                # a failed executor, so the message carries every feature, value and threshold.
                raise DriftDetectedError(
                    message + "\nThe run stops before Transform and Trainer; nothing is pushed. "
                    "Fix the data, or after review raise the threshold in schemas/ "
                    "(drift_comparator, presence.min_fraction), or set anomalies_policy=warn."
                )
            logging.warning("%s\nContinuing because anomalies_policy=warn.", message)
        elif outcome != BASELINE_UNAVAILABLE:
            logging.info("Drift gate (%s): every check holds against %s.", outcome, baseline)
