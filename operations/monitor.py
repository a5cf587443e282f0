"""`monitor`: served traffic's data quality: schema, skew vs training, drift vs the last window.

Reads a window of the server's request log (`serving/request_log.py`: PredictionLog records in
TFRecord files), decodes the tf.Examples the requests carried, and computes TFDV statistics.
Then, with the curated schema:

- schema violations: `tfdv.validate_statistics` in the SERVING environment (no `tips`);
- skew: each feature against the served model's training statistics, with the DriftGate's
  measures and thresholds (`components/drift_gate/drift.py`; the schema's
  `drift_comparator`s, `drift:wasserstein_iqr<=` tags, which see a unit change such as miles
  sent as kilometres, and `presence.min_fraction` floors);
- drift: the same comparators against the previous monitor run's statistics, kept beside its
  report (`<output_dir>/statistics.pb`);
- freshness: the age of the newest training row of the served model (DataPrep's
  `train_end_time`, reached through ML-Metadata like `operations/lineage.py`).

Outputs in `<output_dir>`: `report.html` (inline SVG, renders offline), `summary.json`,
`statistics.pb`, and Prometheus gauges (`metrics.prom`, textfile-collector format; pushed to a
Pushgateway when configured). The exit code says what a CronJob should alert on.
"""

import dataclasses
import datetime
import glob
import html
import json
import os
import time
from collections.abc import Sequence
from typing import Any

import tensorflow as tf
import tensorflow_data_validation as tfdv
from google.protobuf import message, text_format
from prometheus_client import CollectorRegistry, Gauge, push_to_gateway, write_to_textfile
from tensorflow_data_validation.statistics import stats_impl
from tensorflow_metadata.proto.v0 import schema_pb2, statistics_pb2
from tensorflow_serving.apis import prediction_log_pb2
from tfx_bsl.coders import example_coder

from components.drift_gate import drift
from components.reports import html_report
from model_contract.serving_input import input_examples
from operations.monitor_config import MonitorConfig

SERVING_ENVIRONMENT = "SERVING"
EXIT_OK = 0
EXIT_ALERT = 1  # A skew, drift or presence threshold is crossed, or traffic violates the schema.
EXIT_ERROR = 2  # Bad arguments, no logged requests in the window, or no baseline.
EXIT_STALE = 3  # Only: the served model's training data is older than the limit.
STATISTICS_FILE = "statistics.pb"
SKEW = "training"
DRIFT = "previous_window"


__all__ = ["MonitorConfig", "MonitorResult", "run_monitor"]


class MonitorError(ValueError):
    """The monitor cannot run: the message says what is missing (logs, baseline, schema)."""


@dataclasses.dataclass(frozen=True)
class MonitorResult:
    """What one run found (also `summary.json`)."""

    files: list[str]
    requests: int
    examples: int
    schema_anomalies: dict[str, str]
    skew: list[drift.FeatureCheck]
    drift: list[drift.FeatureCheck]
    training_data_age_days: float | None
    warnings: list[str]
    served_version: int | None = None
    # (log file, why it was skipped, wholly or after its complete records).
    skipped: list[tuple[str, str]] = dataclasses.field(default_factory=list)

    @property
    def alerts(self) -> list[str]:
        """One line per crossed threshold or schema violation."""
        lines = [f"schema: feature {k!r}: {v}" for k, v in sorted(self.schema_anomalies.items())]
        lines += [f"skew vs training: {c.describe()}" for c in self.skew if not c.passed]
        lines += [f"drift vs previous window: {c.describe()}" for c in self.drift if not c.passed]
        return lines

    @property
    def exit_code(self) -> int:
        """EXIT_ALERT, else EXIT_STALE when only the freshness warning fired, else EXIT_OK."""
        if self.alerts:
            return EXIT_ALERT
        return EXIT_STALE if self.warnings else EXIT_OK

    def to_json(self) -> dict[str, Any]:
        """The JSON summary."""

        def checks(found: list[drift.FeatureCheck]) -> list[dict[str, Any]]:
            return [{**dataclasses.asdict(c), "passed": c.passed} for c in found]

        return {
            "files": self.files,
            "requests": self.requests,
            "examples": self.examples,
            "served_version": self.served_version,
            "schema_anomalies": self.schema_anomalies,
            "skew": checks(self.skew),
            "drift": checks(self.drift),
            "training_data_age_days": self.training_data_age_days,
            "alerts": self.alerts,
            "warnings": self.warnings,
            "skipped_files": [{"file": f, "reason": why} for f, why in self.skipped],
            "exit_code": self.exit_code,
        }


def log_files(logs: str, window_hours: float | None = None, now: float | None = None) -> list[str]:
    """The request log files of the window, oldest first (by modification time).

    Args:
      logs: A folder (its `*.tfrecord` files) or a glob.
      window_hours: Keep files modified in the last so many hours (None = all).
      now: The window's end (default: now).
    """
    pattern = os.path.join(logs, "*.tfrecord") if os.path.isdir(logs) else logs
    files = [f for f in glob.glob(pattern) if os.path.isfile(f)]
    if window_hours is not None:
        end = time.time() if now is None else now
        files = [f for f in files if end - os.path.getmtime(f) <= window_hours * 3600]
    return sorted(files, key=lambda f: (os.path.getmtime(f), f))


def _all_examples(values: Sequence[bytes]) -> bool:
    """Whether every value is a serialized tf.Example with features (not a raw string input)."""
    try:
        return all(tf.train.Example.FromString(v).features.feature for v in values)
    except message.DecodeError:
        return False


def examples_of(log: prediction_log_pb2.PredictionLog) -> list[bytes]:
    """The serialized tf.Examples one logged request carried.

    Classify/Regress requests hold them as an `Input`; Predict requests hold them in string
    tensors of serialized examples (the taxi model's `examples` input). Other Predict inputs
    (raw feature tensors, strings that are not examples) are skipped.
    """
    kind = log.WhichOneof("log_type")
    if kind == "classify_log":
        return input_examples(log.classify_log.request.input)
    if kind == "regress_log":
        return input_examples(log.regress_log.request.input)
    if kind == "predict_log":
        found: list[bytes] = []
        for tensor in log.predict_log.request.inputs.values():
            if tensor.dtype == tf.string.as_datatype_enum and _all_examples(tensor.string_val):
                found.extend(tensor.string_val)
        return found
    return []


def read_window(files: Sequence[str]) -> tuple[int, list[bytes], list[tuple[str, str]]]:
    """(requests, serialized examples, skipped files with the reason) of the log files.

    A file being written may end in a partial record, and a file may be corrupt or not a log
    at all: reading that file stops there (TF reports DataLossError, protobuf DecodeError), the
    complete records before it count, and the file is listed as skipped with the reason.
    """
    requests, examples, skipped = 0, [], []
    for path in files:
        read = 0
        try:
            for record in tf.data.TFRecordDataset(path).as_numpy_iterator():
                log = prediction_log_pb2.PredictionLog.FromString(record)
                requests += 1
                read += 1
                examples.extend(examples_of(log))
        except tf.errors.DataLossError as e:
            skipped.append(
                (
                    path,
                    f"corrupt or truncated TFRecord after {read} records: {_first_line(e.message)}",
                )
            )
        except message.DecodeError:
            skipped.append((path, f"record {read + 1} is not a PredictionLog"))
        except tf.errors.OpError as e:
            skipped.append((path, f"cannot read: {_first_line(e.message)}"))
    return requests, examples, skipped


def _first_line(text: str) -> str:
    return (text.strip() or "?").splitlines()[0]


def _load_statistics(path: str, what: str) -> statistics_pb2.DatasetFeatureStatisticsList:
    """Reads a binary DatasetFeatureStatisticsList (TFDV's `FeatureStats.pb`).

    Raises:
      MonitorError: If the file cannot be read or is not such statistics.
    """
    statistics = statistics_pb2.DatasetFeatureStatisticsList()
    try:
        with open(path, "rb") as f:
            statistics.ParseFromString(f.read())
    except OSError as e:
        raise MonitorError(f"{what} {path}: cannot read: {e.strerror or e}") from None
    except message.DecodeError:
        raise MonitorError(
            f"{what} {path}: not TFDV statistics (a binary DatasetFeatureStatisticsList)"
        ) from None
    if not statistics.datasets:
        raise MonitorError(f"{what} {path}: holds no dataset statistics")
    return statistics


def load_schema(path: str) -> schema_pb2.Schema:
    """Reads a text schema.

    Raises:
      MonitorError: If the file is missing, unreadable or not a text Schema.
    """
    if not os.path.isfile(path):
        raise MonitorError(f"schema {path}: no such file")
    try:
        return tfdv.load_schema_text(path)
    except (text_format.ParseError, UnicodeDecodeError, tf.errors.OpError) as e:
        raise MonitorError(f"schema {path}: not a text Schema: {_first_line(str(e))}") from None


def statistics_of_examples(
    examples: Sequence[bytes],
) -> statistics_pb2.DatasetFeatureStatisticsList:
    """TFDV statistics of serialized tf.Examples, with the StatisticsGen options of the pipeline."""
    if not examples:
        raise MonitorError("no examples to compute statistics of")
    decoder = example_coder.ExamplesToRecordBatchDecoder()
    batch = decoder.DecodeBatch(list(examples))
    # TFDV's in-memory path (the one `generate_statistics_from_dataframe` uses): one window
    # of logged requests fits in memory, and no Beam pipeline is started for it.
    return stats_impl.generate_statistics_in_memory(batch, drift.stats_options())


def schema_anomalies(
    statistics: statistics_pb2.DatasetFeatureStatisticsList, schema: schema_pb2.Schema
) -> dict[str, str]:
    """Feature -> what violates the schema in the SERVING environment."""
    anomalies = tfdv.validate_statistics(statistics, schema, environment=SERVING_ENVIRONMENT)
    return {
        name: info.description or info.short_description
        for name, info in sorted(anomalies.anomaly_info.items())
    }


def compare(
    current: statistics_pb2.DatasetFeatureStatisticsList,
    baseline: statistics_pb2.DatasetFeatureStatisticsList,
    schema: schema_pb2.Schema,
) -> list[drift.FeatureCheck]:
    """The DriftGate's checks of served traffic against a baseline, SERVING features only."""
    serving_only = {f.name for f in schema.feature if SERVING_ENVIRONMENT in f.not_in_environment}
    return [
        c
        for c in drift.compare_statistics(current, baseline, schema)
        if c.feature not in serving_only
    ]


def _connection(target: str) -> str:
    from metadata import lineage_graph
    from metadata import store as mlmd

    return lineage_graph.encode_connection(mlmd.parse_target(target))


def served_baseline(
    metadata: str, model_dir: str, now: float
) -> tuple[statistics_pb2.DatasetFeatureStatisticsList, int, float | None]:
    """The served version's training statistics and newest training row time, via lineage.

    Returns:
      (train-split statistics, served version, DataPrep's `train_end_time` or None).

    Raises:
      MonitorError: If nothing is served or a link of the lineage is missing.
    """
    import tensorflow as tf

    import model_contract
    from components.drift_gate import executor as drift_executor
    from metadata import lineage_graph
    from operations import lineage

    version = model_contract.latest_version(tf.io.gfile, model_dir)
    if version is None:
        raise MonitorError(f"no version is served from {model_dir}")
    connection = _connection(metadata)
    try:
        statistics, _ = drift_executor.baseline_statistics(connection, model_dir, version)
        found = lineage.version_lineage(lineage_graph.connect(connection), model_dir, version, now)
    except (lineage_graph.LineageError, lineage.LineageNotFoundError) as e:
        raise MonitorError(f"training statistics of served version {version}: {e}") from e
    end = found.get("data", {}).get("train_time_range", [None, None])[1]
    end_time = (
        datetime.datetime.strptime(end, "%Y-%m-%dT%H:%M:%SZ")
        .replace(tzinfo=datetime.timezone.utc)
        .timestamp()
        if end
        else None
    )
    return statistics, version, end_time


def run_monitor(config: MonitorConfig) -> MonitorResult:
    """One monitor run: reads the window, compares, writes the outputs.

    Raises:
      MonitorError: If the window has no logged examples or the baseline cannot be found.
    """
    now = time.time() if config.now is None else config.now
    if os.path.exists(config.output_dir) and not os.path.isdir(config.output_dir):
        raise MonitorError(f"output dir {config.output_dir}: exists and is not a folder")
    schema = load_schema(config.schema_path)
    files = log_files(config.logs, config.window_hours, now)
    if not files:
        raise MonitorError(f"no request log files match {config.logs!r} in the window")
    requests, examples, skipped = read_window(files)
    if not examples:
        reasons = "".join(f"; skipped {path}: {why}" for path, why in skipped)
        raise MonitorError(f"the {len(files)} request log files hold no tf.Examples{reasons}")
    current = statistics_of_examples(examples)

    version = None
    end_time = config.training_end_time
    if config.baseline_statistics:
        if not os.path.isfile(config.baseline_statistics):
            raise MonitorError(f"no baseline statistics file {config.baseline_statistics}")
        training = _load_statistics(config.baseline_statistics, "baseline statistics")
    else:
        assert config.metadata and config.model_dir  # Checked by MonitorConfig.
        training, version, found_end = served_baseline(config.metadata, config.model_dir, now)
        end_time = end_time if end_time is not None else found_end

    previous_path = os.path.join(config.output_dir, STATISTICS_FILE)
    previous = (
        _load_statistics(previous_path, "previous window's statistics (delete to start over)")
        if os.path.isfile(previous_path)
        else None
    )
    age_days = None if end_time is None else round((now - end_time) / 86400, 2)
    warnings = []
    if config.max_training_age_days is not None:
        if age_days is None:
            warnings.append("the served model's training data time is unknown")
        elif age_days > config.max_training_age_days:
            warnings.append(
                f"the served model's newest training row is {age_days:g} days old "
                f"(limit {config.max_training_age_days:g})"
            )
    result = MonitorResult(
        files=files,
        requests=requests,
        examples=len(examples),
        schema_anomalies=schema_anomalies(current, schema),
        skew=compare(current, training, schema),
        drift=compare(current, previous, schema) if previous is not None else [],
        training_data_age_days=age_days,
        warnings=warnings,
        served_version=version,
        skipped=skipped,
    )
    write_outputs(config, result, current, training, previous)
    return result


def _write_atomically(path: str, data: bytes) -> None:
    staging = f"{path}.tmp-{os.getpid()}"
    with open(staging, "wb") as f:
        f.write(data)
    os.replace(staging, path)


def write_outputs(
    config: MonitorConfig,
    result: MonitorResult,
    current: statistics_pb2.DatasetFeatureStatisticsList,
    training: statistics_pb2.DatasetFeatureStatisticsList,
    previous: statistics_pb2.DatasetFeatureStatisticsList | None,
) -> None:
    """Writes report.html, summary.json, metrics.prom and this window's statistics."""
    os.makedirs(config.output_dir, exist_ok=True)
    _write_atomically(
        os.path.join(config.output_dir, "summary.json"),
        json.dumps(result.to_json(), indent=2).encode("utf-8"),
    )
    _write_atomically(
        os.path.join(config.output_dir, "report.html"),
        render_report(result, current, training, previous).encode("utf-8"),
    )
    registry = gauges(result)
    write_to_textfile(os.path.join(config.output_dir, "metrics.prom"), registry)
    if config.pushgateway_url:
        push_to_gateway(config.pushgateway_url, job=config.job, registry=registry)
    # Last: the next run's drift baseline is this window only once the report exists.
    _write_atomically(os.path.join(config.output_dir, STATISTICS_FILE), current.SerializeToString())


def gauges(result: MonitorResult) -> CollectorRegistry:
    """The run's Prometheus gauges in a fresh registry."""
    registry = CollectorRegistry()
    value = Gauge(
        "taxi_monitor_feature_value",
        "Per feature: distance to the baseline, or fraction present, of the served traffic.",
        ["feature", "measure", "baseline"],
        registry=registry,
    )
    threshold = Gauge(
        "taxi_monitor_feature_threshold",
        "The curated schema's threshold for the measure.",
        ["feature", "measure", "baseline"],
        registry=registry,
    )
    crossed = Gauge(
        "taxi_monitor_feature_alert",
        "1 when the measure is on the wrong side of its threshold.",
        ["feature", "measure", "baseline"],
        registry=registry,
    )
    for baseline, checks in ((SKEW, result.skew), (DRIFT, result.drift)):
        for c in checks:
            labels = (c.feature, c.measure, baseline)
            value.labels(*labels).set(c.value)
            threshold.labels(*labels).set(c.threshold)
            crossed.labels(*labels).set(0 if c.passed else 1)
    anomalies = Gauge(
        "taxi_monitor_schema_anomaly",
        "1 per feature whose served values violate the schema (SERVING environment).",
        ["feature"],
        registry=registry,
    )
    for feature in result.schema_anomalies:
        anomalies.labels(feature).set(1)
    Gauge("taxi_monitor_examples", "Examples in the window.", registry=registry).set(
        result.examples
    )
    age = Gauge(
        "taxi_monitor_training_data_age_days",
        "Age of the served model's newest training row (NaN when unknown).",
        registry=registry,
    )
    age.set(
        float("nan") if result.training_data_age_days is None else result.training_data_age_days
    )
    Gauge(
        "taxi_monitor_alerts", "Crossed thresholds and schema violations.", registry=registry
    ).set(len(result.alerts))
    Gauge(
        "taxi_monitor_last_run_timestamp_seconds", "When the monitor last ran.", registry=registry
    ).set_to_current_time()
    return registry


_COLORS = {"current": "#1f6feb", SKEW: "#9aa4b2", DRIFT: "#d9480f"}


def _shares(
    statistics: statistics_pb2.DatasetFeatureStatisticsList | None, name: str
) -> dict[str, float]:
    """Category -> share (string features) or bucket label -> share (numeric), for plots."""
    if statistics is None:
        return {}
    for feature in statistics.datasets[0].features:
        if (feature.path.step[0] if feature.path.step else feature.name) != name:
            continue
        if feature.HasField("string_stats"):
            buckets = feature.string_stats.rank_histogram.buckets
            total = sum(b.sample_count for b in buckets) or 1.0
            return {b.label: b.sample_count / total for b in buckets}
        if feature.HasField("num_stats"):
            for histogram in feature.num_stats.histograms:
                if histogram.type == statistics_pb2.Histogram.QUANTILES:
                    qs = [b.high_value for b in histogram.buckets]
                    # Quantiles at 10% steps: plotted as deciles of the value.
                    return {f"q{10 * (i + 1)}": q for i, q in enumerate(qs[: len(qs) - 1])}
    return {}


def _feature_plot(
    name: str,
    current: statistics_pb2.DatasetFeatureStatisticsList,
    training: statistics_pb2.DatasetFeatureStatisticsList,
    previous: statistics_pb2.DatasetFeatureStatisticsList | None,
) -> str:
    """Category shares (categorical) or deciles scaled to the largest (numeric), as bars."""
    series = [("current", _shares(current, name)), (SKEW, _shares(training, name))]
    if previous is not None:
        series.append((DRIFT, _shares(previous, name)))
    keys = list(dict.fromkeys(k for _, shares in series for k in shares))[:12]
    if not keys:
        return ""
    numeric = all(k.startswith("q") and k[1:].isdigit() for k in keys)
    values = [v for _, s in series for v in s.values()]
    low, high = min(values), max(values)
    span = (high - low) or 1.0

    def bar(shares: dict[str, float], key: str) -> float | None:
        if key not in shares:
            return None
        # Deciles are placed on [0, 1] between the smallest and largest of all series.
        return (shares[key] - low) / span if numeric else shares[key]

    rows = [(key, [(bar(s, key), _COLORS[kind]) for kind, s in series]) for key in keys]
    caption = f"deciles on [{low:.4g}, {high:.4g}]" if numeric else "category shares"
    return f"<h3>{html.escape(name)}</h3><p class='muted'>{caption}</p>" + html_report.bars_svg(
        rows
    )


def render_report(
    result: MonitorResult,
    current: statistics_pb2.DatasetFeatureStatisticsList,
    training: statistics_pb2.DatasetFeatureStatisticsList,
    previous: statistics_pb2.DatasetFeatureStatisticsList | None,
) -> str:
    """One self-contained HTML page: verdict, alerts, check tables and per-feature plots."""
    e = html.escape
    alerts = result.alerts
    verdict = (
        f"<div class='verdict bad'>{len(alerts)} alert(s)</div><ul>"
        + "".join(f"<li>{e(a)}</li>" for a in alerts)
        + "</ul>"
        if alerts
        else "<div class='verdict ok'>No threshold crossed, no schema violation</div>"
    )
    warnings = "".join(f"<div class='verdict bad'>{e(w)}</div>" for w in result.warnings)

    def table(title: str, checks: list[drift.FeatureCheck]) -> str:
        if not checks:
            return f"<h2>{e(title)}</h2><p class='muted'>no baseline</p>"
        rows = "".join(
            f"<tr><td>{e(c.feature)}</td><td>{e(c.measure)}</td><td>{c.value:.4g}</td>"
            f"<td>{'≥' if c.measure == drift.PRESENCE else '≤'} {c.threshold:g}</td>"
            f"<td>{'ok' if c.passed else '<b>ALERT</b>'}</td></tr>"
            for c in sorted(checks, key=lambda c: (c.passed, c.feature, c.measure))
        )
        return (
            f"<h2>{e(title)}</h2><table><tr><th>feature</th><th>measure</th><th>value</th>"
            f"<th>threshold</th><th>result</th></tr>{rows}</table>"
        )

    anomalies = (
        "<table><tr><th>feature</th><th>violation</th></tr>"
        + "".join(
            f"<tr><td>{e(k)}</td><td>{e(v)}</td></tr>"
            for k, v in sorted(result.schema_anomalies.items())
        )
        + "</table>"
        if result.schema_anomalies
        else "<p class='muted'>none</p>"
    )
    features = sorted({c.feature for c in result.skew} | set(result.schema_anomalies))
    legend = html_report.legend(
        [("this window", _COLORS["current"]), ("training", _COLORS[SKEW])]
        + ([("previous window", _COLORS[DRIFT])] if previous is not None else [])
    )
    plots = "".join(_feature_plot(name, current, training, previous) for name in features)
    age = result.training_data_age_days
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>Serving monitor</title>"
        f"<style>{html_report.STYLE}</style></head><body><h1>Serving monitor</h1>"
        f"<p class='muted'>{result.requests} logged requests, {result.examples} examples, "
        f"{len(result.files)} files; served version {result.served_version or 'n/a'}; "
        f"newest training row: {'age unknown' if age is None else f'{age:g} days old'}</p>"
        f"{verdict}{warnings}<h2>Schema violations (SERVING environment)</h2>{anomalies}"
        + table("Skew: served traffic vs the served model's training data", result.skew)
        + table("Drift: this window vs the previous one", result.drift)
        + f"<h2>Distributions</h2>{legend}{plots}</body></html>"
    )
