"""Reads what a pipeline run produced from ML-Metadata and summarises it for people."""

import dataclasses
import json
import os
import platform
import time
from typing import Any

import tensorflow_data_validation as tfdv
import tensorflow_model_analysis as tfma
import tfx
from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2
from tfx.types import artifact_utils

from pipeline.evaluation import CREDIT_CARD_SLICE

HEADLINE_METRICS = ("auc", "precision", "recall", "binary_accuracy", "calibration", "example_count")


@dataclasses.dataclass
class RunSummary:
    """The outcome of one pipeline run.

    Attributes:
      run_id: TFX pipeline run id.
      node_states: Node id -> `complete`, `cached`, `failed`, ... for nodes that ran.
      data_version: Hash of the train/eval CSVs DataPrep wrote (None if it did not finish).
      data_uri: Directory of those CSVs (`train/data.csv`, `eval/data.csv`).
      data_rows: Split name -> rows DataPrep wrote.
      data_time_ranges: Split name -> (first, last) Unix time of its rows.
      source_uri: The source CSVs DataPrep read.
      rows_per_split: Split name -> examples counted by StatisticsGen.
      anomalies: Anomalies the gate saw (split, feature, reason).
      metrics_overall: Headline metrics of the candidate on the whole eval split.
      metrics_credit_card: The same on payment_type = Credit Card.
      blessed: Evaluator's verdict (None if the Evaluator did not run).
      failed_thresholds: Why the model was not blessed, one line per failed threshold.
      baseline: `none (first push: ...)` or `version N`.
      pushed_version: Version written (or already serving) in the model dir.
      pushed_path: Its directory.
      load_test: The pre-push load test's verdict line (None when it did not run).
      push_outcome: `pushed`, `already_serving`, `not_blessed` or `not_infra_blessed`.
      reports: Report name -> file of the run's reports for people (Markdown, HTML).
    """

    run_id: str
    node_states: dict[str, str]
    data_version: str | None = None
    data_uri: str | None = None
    data_rows: dict[str, int] = dataclasses.field(default_factory=dict)
    data_time_ranges: dict[str, tuple[int, int]] = dataclasses.field(default_factory=dict)
    source_uri: str | None = None
    rows_per_split: dict[str, int] = dataclasses.field(default_factory=dict)
    anomalies: list[dict[str, str]] = dataclasses.field(default_factory=list)
    metrics_overall: dict[str, float] = dataclasses.field(default_factory=dict)
    metrics_credit_card: dict[str, float] = dataclasses.field(default_factory=dict)
    blessed: bool | None = None
    failed_thresholds: list[str] = dataclasses.field(default_factory=list)
    baseline: str | None = None
    pushed_version: str | None = None
    pushed_path: str | None = None
    push_outcome: str | None = None
    load_test: str | None = None
    reports: dict[str, str] = dataclasses.field(default_factory=dict)


_STATE_NAMES = {
    metadata_store_pb2.Execution.COMPLETE: "complete",
    metadata_store_pb2.Execution.CACHED: "cached",
    metadata_store_pb2.Execution.FAILED: "failed",
    metadata_store_pb2.Execution.RUNNING: "running",
    metadata_store_pb2.Execution.CANCELED: "canceled",
}


def _outputs_by_node(store: metadata_store.MetadataStore, run_context_id: int) -> tuple[dict, dict]:
    executions = store.get_executions_by_context(run_context_id)
    states: dict[str, str] = {}
    outputs: dict[str, dict[str, list[metadata_store_pb2.Artifact]]] = {}
    for execution in sorted(executions, key=lambda e: e.id):
        node_contexts = [
            c for c in store.get_contexts_by_execution(execution.id) if c.type == "node"
        ]
        if not node_contexts:
            continue
        node_id = node_contexts[0].name.split(".", 1)[-1]
        states[node_id] = _STATE_NAMES.get(execution.last_known_state, "unknown")
        events = store.get_events_by_execution_ids([execution.id])
        by_key: dict[str, list[int]] = {}
        for event in events:
            if event.type in (
                metadata_store_pb2.Event.OUTPUT,
                metadata_store_pb2.Event.DECLARED_OUTPUT,
            ):
                by_key.setdefault(event.path.steps[0].key, []).append(event.artifact_id)
        outputs[node_id] = {
            key: list(store.get_artifacts_by_id(ids)) for key, ids in by_key.items()
        }
    return states, outputs


def _prop(artifact: metadata_store_pb2.Artifact, name: str) -> Any:
    for props in (artifact.custom_properties, artifact.properties):
        if name in props:
            value = props[name]
            return getattr(value, value.WhichOneof("value"))
    return None


def _headline(metrics: dict[str, Any]) -> dict[str, float]:
    found: dict[str, float] = {}
    for output in metrics.values():
        for sub in output.values():
            for name, value in sub.items():
                if name in HEADLINE_METRICS and "doubleValue" in value:
                    found[name] = float(value["doubleValue"])
    return found


def _slice_metrics(evaluation_uri: str) -> tuple[dict[str, float], dict[str, float]]:
    # TFMA names metrics by model only when two models were evaluated (with a baseline).
    result = tfma.load_eval_result(evaluation_uri, model_name="candidate")
    if not result.slicing_metrics:
        result = tfma.load_eval_result(evaluation_uri)
    overall: dict[str, float] = {}
    credit_card: dict[str, float] = {}
    wanted = tuple(CREDIT_CARD_SLICE.items())
    for slice_key, metrics in result.slicing_metrics:
        if slice_key == ():
            overall = _headline(metrics)
        elif tuple((k, v.decode() if isinstance(v, bytes) else v) for k, v in slice_key) == wanted:
            credit_card = _headline(metrics)
    return overall, credit_card


def _failed_thresholds(evaluation_uri: str) -> list[str]:
    validation = tfma.load_validation_result(evaluation_uri)
    lines = []
    for per_slice in validation.metric_validations_per_slice:
        where = (
            ", ".join(
                f"{k.column}={_slice_value(k)}" for k in per_slice.slice_key.single_slice_keys
            )
            or "overall"
        )
        for failure in per_slice.failures:
            kind = "change vs baseline" if failure.metric_key.is_diff else "value"
            lines.append(
                f"{failure.metric_key.name} {kind} on {where} = "
                f"{failure.metric_value.double_value.value:.4f} "
                f"fails {json.dumps(_threshold_text(failure.metric_threshold))}"
            )
    return lines


def _slice_value(key: Any) -> Any:
    return key.bytes_value.decode() if key.HasField("bytes_value") else key.int64_value


def _threshold_text(threshold: Any) -> dict[str, Any]:
    from google.protobuf import json_format

    return json_format.MessageToDict(threshold)


# (node id, output key, what it is) of the reports written for people and the KFP UI.
_REPORT_OUTPUTS = (
    ("AnomaliesGate", "anomalies_report", "data validation (Markdown)"),
    ("DriftGate", "drift_report", "drift and presence (Markdown)"),
    ("Evaluator", "report", "evaluation (HTML)"),
    ("LoadTest", "report", "load test (Markdown)"),
    ("Pusher", "push_report", "push (Markdown)"),
)


def report_paths(
    outputs: dict[str, dict[str, list[metadata_store_pb2.Artifact]]],
) -> dict[str, str]:
    """Files of the run's Markdown and HTML reports, as recorded in ML-Metadata.

    Args:
      outputs: Node id -> output key -> artifacts of one run.

    Returns:
      What each report is -> its file (the artifact URI: these are value artifacts).
    """
    return {
        title: artifact.uri
        for node, key, title in _REPORT_OUTPUTS
        for artifact in outputs.get(node, {}).get(key, [])
    }


def load_test_line(outputs: dict[str, dict[str, list[metadata_store_pb2.Artifact]]]) -> str | None:
    """The LoadTest's verdict in one line, from its InfraBlessing (None when it did not run).

    Args:
      outputs: Node id -> output key -> artifacts of one run.

    Returns:
      E.g. `blessed (300 requests, 0 failed, p50 1.9 ms, p99 6.2 ms, loaded in 8.4 s): ...`.
    """
    for artifact in outputs.get("LoadTest", {}).get("blessing", []):
        verdict = "blessed" if _prop(artifact, "blessed") == 1 else "NOT blessed"
        load_time = _prop(artifact, "load_time_s")
        loaded = (
            "did not load" if load_time is None or load_time < 0 else f"loaded in {load_time:.1f} s"
        )
        requests, failures = (
            int(_prop(artifact, "requests") or 0),
            int(_prop(artifact, "failures") or 0),
        )
        p50, p99 = _prop(artifact, "p50_ms") or 0.0, _prop(artifact, "p99_ms") or 0.0
        return (
            f"{verdict} ({requests} requests, {failures} failed, p50 {p50:.1f} ms, "
            f"p99 {p99:.1f} ms, {loaded}): {_prop(artifact, 'reason')}"
        )
    return None


def format_reports(reports: dict[str, str]) -> list[str]:
    """Summary lines naming each report file (none when the run wrote none)."""
    if not reports:
        return []
    return ["  reports:"] + [f"    {title}: {path}" for title, path in reports.items()]


def summarize_latest_run(metadata_path: str, pipeline_name: str) -> RunSummary:
    """Summarises the newest run of a pipeline recorded in a SQLite MLMD store.

    Args:
      metadata_path: SQLite ML-Metadata file.
      pipeline_name: Pipeline name.

    Returns:
      The summary of the newest `pipeline_run` context of that pipeline.

    Raises:
      LookupError: If the store has no run of the pipeline.
    """
    connection = metadata_store_pb2.ConnectionConfig()
    connection.sqlite.filename_uri = metadata_path
    connection.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
    store = metadata_store.MetadataStore(connection)
    runs = store.get_contexts_by_type("pipeline_run")
    pipeline_ctx = store.get_context_by_type_and_name("pipeline", pipeline_name)
    if pipeline_ctx is not None:
        linked = {c.id for c in store.get_children_contexts_by_context(pipeline_ctx.id)}
        runs = [r for r in runs if r.id in linked] or runs
    if not runs:
        raise LookupError(f"No run of pipeline {pipeline_name!r} in {metadata_path}")
    run = max(runs, key=lambda c: (c.create_time_since_epoch, c.id))
    states, outputs = _outputs_by_node(store, run.id)
    summary = RunSummary(run_id=run.name, node_states=states)

    for artifact in outputs.get("DataPrep", {}).get("prepared_data", []):
        summary.data_version = _prop(artifact, "data_version")
        summary.data_uri = artifact.uri
        summary.source_uri = _prop(artifact, "source_uri")
        for split in ("train", "eval"):
            summary.data_rows[split] = int(_prop(artifact, f"{split}_rows") or 0)
            summary.data_time_ranges[split] = (
                int(_prop(artifact, f"{split}_start_time") or 0),
                int(_prop(artifact, f"{split}_end_time") or 0),
            )

    for artifact in outputs.get("StatisticsGen", {}).get("statistics", []):
        for split in artifact_utils.decode_split_names(_prop(artifact, "split_names") or "[]"):
            stats = tfdv.load_stats_binary(
                os.path.join(artifact.uri, f"Split-{split}", "FeatureStats.pb")
            )
            summary.rows_per_split[split] = int(stats.datasets[0].num_examples)
    for artifact in outputs.get("AnomaliesGate", {}).get("validated_schema", []):
        summary.anomalies = json.loads(_prop(artifact, "anomalies_report") or "[]")
    for artifact in outputs.get("LatestPushedModel", {}).get("baseline_model", []):
        version = _prop(artifact, "baseline_version")
        summary.baseline = (
            f"version {version}" if version else "none (first push: absolute thresholds only)"
        )
    for artifact in outputs.get("Evaluator", {}).get("evaluation", []):
        summary.metrics_overall, summary.metrics_credit_card = _slice_metrics(artifact.uri)
        summary.failed_thresholds = _failed_thresholds(artifact.uri)
    for artifact in outputs.get("Evaluator", {}).get("blessing", []):
        summary.blessed = bool(_prop(artifact, "blessed"))
    for artifact in outputs.get("Pusher", {}).get("pushed_model", []):
        summary.push_outcome = _prop(artifact, "push_outcome")
        if _prop(artifact, "pushed"):
            summary.pushed_version = _prop(artifact, "pushed_version")
            summary.pushed_path = _prop(artifact, "pushed_destination")
    summary.load_test = load_test_line(outputs)
    summary.reports = report_paths(outputs)
    return summary


def format_summary(summary: RunSummary) -> str:
    """Renders a RunSummary as a short report for the terminal."""

    def metrics_line(metrics: dict[str, float]) -> str:
        return ", ".join(f"{k}={metrics[k]:.4g}" for k in HEADLINE_METRICS if k in metrics) or "n/a"

    cached = sorted(n for n, s in summary.node_states.items() if s == "cached")

    def time_range(split: str) -> str:
        first, last = summary.data_time_ranges.get(split, (0, 0))
        return " to ".join(
            time.strftime("%Y-%m-%d %H:%M", time.gmtime(stamp)) for stamp in (first, last)
        )

    if summary.data_version is None:
        data_line = "  data: n/a (DataPrep did not finish)"
    else:
        data_line = f"  data: version {summary.data_version} from {summary.source_uri}\n" + "".join(
            f"    {split}: {summary.data_rows.get(split, 0)} rows, {time_range(split)} UTC\n"
            for split in ("train", "eval")
        ).rstrip("\n")
    lines = [
        f"Run {summary.run_id}",
        f"  stack: TFX {tfx.__version__}, Python {platform.python_version()}",
        data_line,
        *freshness_lines(summary),
        "  rows per split: "
        + (", ".join(f"{k}={v}" for k, v in sorted(summary.rows_per_split.items())) or "n/a"),
        f"  anomalies: {len(summary.anomalies)}"
        + "".join(
            f"\n    {a['split']}/{a['feature'] or '<data set>'}: {a['short']}"
            for a in summary.anomalies
        ),
        f"  metrics overall:      {metrics_line(summary.metrics_overall)}",
        f"  metrics Credit Card:  {metrics_line(summary.metrics_credit_card)}",
        f"  baseline: {summary.baseline or 'n/a'}",
    ]
    if summary.blessed is None:
        lines.append("  blessed: n/a (the Evaluator did not run)")
    elif summary.blessed:
        lines.append("  blessed: yes (every threshold holds overall and on Credit Card)")
    else:
        lines.append(
            "  blessed: NO, because:" + "".join(f"\n    {r}" for r in summary.failed_thresholds)
        )
    if summary.load_test:
        lines.append(f"  load test: {summary.load_test}")
    if summary.pushed_version:
        where = f"version {summary.pushed_version} at {summary.pushed_path}"
        lines.append(f"  pushed: {where} ({summary.push_outcome})")
    else:
        lines.append(f"  pushed: no ({summary.push_outcome or 'the Pusher did not run'})")
    if cached:
        lines.append(
            f"  cached steps: {len(cached)}/{len(summary.node_states)} ({', '.join(cached)})"
        )
    lines += format_reports(summary.reports)
    return "\n".join(lines)


def freshness_lines(summary: RunSummary, now: float | None = None) -> list[str]:
    """`  freshness: newest training row 3.2 days old (...)`, or nothing without DataPrep's data.

    Args:
      summary: A run summary.
      now: Unix time to measure the age at (default: now).

    Returns:
      Zero or one line.
    """
    newest = summary.data_time_ranges.get("train", (0, 0))[1]
    if summary.data_version is None or not newest:
        return []
    age_days = ((time.time() if now is None else now) - newest) / 86400
    stamp = time.strftime("%Y-%m-%d %H:%M", time.gmtime(newest))
    return [f"  freshness: newest training row {age_days:.1f} days old ({stamp} UTC)"]
