"""Reads what a pipeline run produced from ML-Metadata and summarises it for people."""

import dataclasses
import json
import os
import platform
import time

import tensorflow_data_validation as tfdv
import tfx
from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2
from tfx.types import artifact_utils

from metadata import lineage_graph, tfma_results
from metadata import store as mlmd
from metadata.store import property_value
from metadata.tfma_results import HEADLINE_METRICS
from pipeline.config import EvaluationSettings
from pipeline.evaluation import CREDIT_CARD_SLICE, build_eval_config

# The headline slice the thresholds hold on beside the whole data set, as SliceResult names it.
CREDIT_CARD = "{}={}".format(*next(iter(CREDIT_CARD_SLICE.items())))


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


def _outputs_by_node(
    store: metadata_store.MetadataStore, run_context_id: int
) -> tuple[dict[str, str], dict[str, dict[str, list[metadata_store_pb2.Artifact]]]]:
    states: dict[str, str] = {}
    outputs: dict[str, dict[str, list[metadata_store_pb2.Artifact]]] = {}
    for execution in sorted(store.get_executions_by_context(run_context_id), key=lambda e: e.id):
        node = lineage_graph.node_id(store, execution.id)
        if node is None:
            continue
        states[node] = mlmd.execution_state(execution)
        outputs[node] = lineage_graph.outputs(store, execution.id)
    return states, outputs


def read_run_evaluation(evaluation_uri: str) -> tfma_results.EvaluationResult:
    """An Evaluator output of this pipeline, read with its EvalConfig's model names and slices.

    Raises:
      ValueError: If the directory holds no metrics of the candidate.
    """
    # Reading needs only the model names and headline slices, which the thresholds leave alone.
    return tfma_results.read_evaluation(evaluation_uri, build_eval_config(EvaluationSettings()))


def headline_metrics(evaluation_uri: str) -> dict[str, dict[str, float]]:
    """Headline slice name (`overall`, `payment_type=Credit Card`) -> the candidate's metrics."""
    return {s.name: s.candidate for s in read_run_evaluation(evaluation_uri).headline}


def metrics_line(metrics: dict[str, float]) -> str:
    """`auc=0.81, precision=0.7, ...` in the reports' order, or `n/a`."""
    return ", ".join(f"{k}={metrics[k]:.4g}" for k in HEADLINE_METRICS if k in metrics) or "n/a"


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
        verdict = "blessed" if property_value(artifact, "blessed") == 1 else "NOT blessed"
        load_time = property_value(artifact, "load_time_s")
        loaded = (
            "did not load" if load_time is None or load_time < 0 else f"loaded in {load_time:.1f} s"
        )
        requests, failures = (
            int(property_value(artifact, "requests") or 0),
            int(property_value(artifact, "failures") or 0),
        )
        p50, p99 = (
            property_value(artifact, "p50_ms") or 0.0,
            property_value(artifact, "p99_ms") or 0.0,
        )
        return (
            f"{verdict} ({requests} requests, {failures} failed, p50 {p50:.1f} ms, "
            f"p99 {p99:.1f} ms, {loaded}): {property_value(artifact, 'reason')}"
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
      LookupError: If the store has no run of the pipeline (or does not exist).
    """
    store = mlmd.open_store(mlmd.sqlite_config(metadata_path))
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
        summary.data_version = property_value(artifact, "data_version")
        summary.data_uri = artifact.uri
        summary.source_uri = property_value(artifact, "source_uri")
        for split in ("train", "eval"):
            summary.data_rows[split] = int(property_value(artifact, f"{split}_rows") or 0)
            summary.data_time_ranges[split] = (
                int(property_value(artifact, f"{split}_start_time") or 0),
                int(property_value(artifact, f"{split}_end_time") or 0),
            )

    for artifact in outputs.get("StatisticsGen", {}).get("statistics", []):
        for split in artifact_utils.decode_split_names(
            property_value(artifact, "split_names") or "[]"
        ):
            stats = tfdv.load_stats_binary(
                os.path.join(artifact.uri, f"Split-{split}", "FeatureStats.pb")
            )
            summary.rows_per_split[split] = int(stats.datasets[0].num_examples)
    for artifact in outputs.get("AnomaliesGate", {}).get("validated_schema", []):
        summary.anomalies = json.loads(property_value(artifact, "anomalies_report") or "[]")
    for artifact in outputs.get("LatestPushedModel", {}).get("baseline_model", []):
        version = property_value(artifact, "baseline_version")
        summary.baseline = (
            f"version {version}" if version else "none (first push: absolute thresholds only)"
        )
    for artifact in outputs.get("Evaluator", {}).get("evaluation", []):
        evaluation = read_run_evaluation(artifact.uri)
        by_name = {s.name: s.candidate for s in evaluation.headline}
        summary.metrics_overall = by_name.get(tfma_results.OVERALL, {})
        summary.metrics_credit_card = by_name.get(CREDIT_CARD, {})
        summary.failed_thresholds = evaluation.failures
    for artifact in outputs.get("Evaluator", {}).get("blessing", []):
        summary.blessed = bool(property_value(artifact, "blessed"))
    for artifact in outputs.get("Pusher", {}).get("pushed_model", []):
        summary.push_outcome = property_value(artifact, "push_outcome")
        if property_value(artifact, "pushed"):
            summary.pushed_version = property_value(artifact, "pushed_version")
            summary.pushed_path = property_value(artifact, "pushed_destination")
    summary.load_test = load_test_line(outputs)
    summary.reports = report_paths(outputs)
    return summary


def format_summary(summary: RunSummary) -> str:
    """Renders a RunSummary as a short report for the terminal."""

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
