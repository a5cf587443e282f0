"""Traces and run metrics of local runs: a span per run and per step, Prometheus run metrics."""

import contextlib
import dataclasses
import os
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from pipeline.config import RunMetricsSettings
from serving.tracing import TracingSettings

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Span

    from operations.summary import RunSummary

SERVICE_NAME = "tfx-taxi-pipeline"
METRICS_FILE = "pipeline.prom"


@dataclasses.dataclass
class _ActiveRun:
    tracer: Any
    run_span: "Span"
    step_seconds: dict[str, float] = dataclasses.field(default_factory=dict)


# BeamDagRunner runs each node in a DoFn it pickles, on its own threads of this process: the
# run's tracer and span reach the steps through this module, not through the DoFn or the
# (thread-local) OpenTelemetry context.
_active: _ActiveRun | None = None
_lock = threading.Lock()


@contextlib.contextmanager
def run_span(
    tracing: TracingSettings,
    pipeline_name: str,
    output_dir: str,
    tracer_provider: "TracerProvider | None" = None,
) -> Iterator[dict[str, float]]:
    """Traces one pipeline run; steps run inside it get child spans (see `step_span`).

    Args:
      tracing: Tracing settings (`none`: no provider, no spans, step times still recorded).
      pipeline_name: Recorded on the run span.
      output_dir: Recorded on the run span.
      tracer_provider: Overrides the provider built from `tracing` (tests, embedding apps).

    Yields:
      Node id -> step seconds, filled as steps finish.
    """
    global _active
    from opentelemetry import trace
    from opentelemetry.trace import Status, StatusCode

    from serving.tracing import build_tracer_provider

    owned = tracer_provider is None
    provider = tracer_provider or build_tracer_provider(tracing, SERVICE_NAME)
    tracer = trace.get_tracer("pipeline", tracer_provider=provider or trace.NoOpTracerProvider())
    try:
        with tracer.start_as_current_span(
            "pipeline.run",
            attributes={"pipeline.name": pipeline_name, "pipeline.output_dir": output_dir},
            record_exception=True,
        ) as span:
            active = _ActiveRun(tracer, span)
            with _lock:
                _active = active
            try:
                yield active.step_seconds
                span.set_attribute("pipeline.outcome", "succeeded")
            except BaseException as e:
                span.set_attribute("pipeline.outcome", "failed")
                span.set_status(Status(StatusCode.ERROR, f"{type(e).__name__}: {e}"))
                raise
            finally:
                with _lock:
                    _active = None
    finally:
        if owned and provider is not None:
            provider.shutdown()  # flushes the batch processor, also after a failed run


@dataclasses.dataclass
class StepOutcome:
    """What a step reports on its span once it ran.

    Attributes:
      cached: The step reused an earlier result.
      rows: Split -> rows, where the step's outputs record them.
      recording: Whether a span records them (no need to read rows otherwise).
    """

    cached: bool = False
    rows: dict[str, int] = dataclasses.field(default_factory=dict)
    recording: bool = False


@contextlib.contextmanager
def step_span(node_id: str) -> Iterator[StepOutcome]:
    """Times one step and traces it as a child of the active run's span (if any).

    Args:
      node_id: The node id.

    Yields:
      A StepOutcome for the caller to fill after the step ran.
    """
    active = _active
    outcome = StepOutcome()
    start = time.monotonic()
    if active is None:
        yield outcome
        return
    from opentelemetry import trace
    from opentelemetry.trace import Status, StatusCode

    with active.tracer.start_as_current_span(
        f"pipeline.step {node_id}",
        context=trace.set_span_in_context(active.run_span),
        attributes={"pipeline.node_id": node_id},
        record_exception=True,
    ) as span:
        outcome.recording = span.is_recording()
        try:
            yield outcome
        except BaseException as e:
            span.set_attribute("pipeline.step.outcome", "failed")
            span.set_status(Status(StatusCode.ERROR, f"{type(e).__name__}: {e}"))
            raise
        else:
            span.set_attribute("pipeline.step.outcome", "cached" if outcome.cached else "complete")
            span.set_attribute("pipeline.step.cached", outcome.cached)
            for split, rows in outcome.rows.items():
                span.set_attribute(f"pipeline.step.rows.{split}", rows)
        finally:
            with _lock:
                active.step_seconds[node_id] = time.monotonic() - start


def output_rows(artifacts: list[Any]) -> dict[str, int]:
    """Rows per split recorded by a step's MLMD output artifacts, where known.

    DataPrep records `<split>_rows` properties; StatisticsGen's statistics hold the count of
    examples per split. Other outputs record none.

    Args:
      artifacts: MLMD artifacts (`metadata_store_pb2.Artifact`) output by one execution.

    Returns:
      Split -> rows.
    """
    rows: dict[str, int] = {}
    for artifact in artifacts:
        for name, value in artifact.custom_properties.items():
            if name.endswith("_rows") and value.WhichOneof("value") == "int_value":
                rows[name[: -len("_rows")]] = int(value.int_value)
        if artifact.type == "ExampleStatistics":
            import tensorflow_data_validation as tfdv
            from tfx.types import artifact_utils

            names = artifact.properties["split_names"].string_value or "[]"
            for split in artifact_utils.decode_split_names(names):
                path = os.path.join(artifact.uri, f"Split-{split}", "FeatureStats.pb")
                if os.path.exists(path):
                    stats = tfdv.load_stats_binary(path)
                    rows[split] = int(stats.datasets[0].num_examples)
    return rows


def build_registry(
    summary: "RunSummary", step_seconds: dict[str, float], run_seconds: float, pipeline: str
) -> Any:
    """The run's metrics in a dedicated registry (nothing of the process's own metrics).

    Args:
      summary: The run's summary (from MLMD).
      step_seconds: Node id -> wall seconds of the step in this run.
      run_seconds: Wall seconds of the whole run.
      pipeline: Pipeline name (the `pipeline` label).

    Returns:
      A `prometheus_client.CollectorRegistry`.
    """
    from prometheus_client import CollectorRegistry, Gauge

    registry = CollectorRegistry()

    def gauge(name: str, doc: str, labels: tuple[str, ...] = ()) -> Gauge:
        return Gauge(name, doc, ("pipeline", *labels), registry=registry)

    gauge("tfx_pipeline_run_duration_seconds", "Wall time of the last run").labels(pipeline).set(
        run_seconds
    )
    gauge("tfx_pipeline_run_timestamp_seconds", "When the last run ended (Unix time)").labels(
        pipeline
    ).set(time.time())
    durations = gauge("tfx_pipeline_step_duration_seconds", "Wall time per step", ("node",))
    for node, seconds in sorted(step_seconds.items()):
        durations.labels(pipeline, node).set(seconds)
    cached = gauge("tfx_pipeline_step_cached", "1 if the step reused a cached result", ("node",))
    for node, state in sorted(summary.node_states.items()):
        cached.labels(pipeline, node).set(1 if state == "cached" else 0)
    rows = gauge("tfx_pipeline_rows", "Examples per split (StatisticsGen)", ("split",))
    for split, count in sorted(summary.rows_per_split.items()):
        rows.labels(pipeline, split).set(count)
    gauge("tfx_pipeline_anomalies", "Data anomalies found").labels(pipeline).set(
        len(summary.anomalies)
    )
    metrics = gauge(
        "tfx_pipeline_eval_metric", "Candidate model metric on the eval split", ("slice", "metric")
    )
    for slice_name, values in (
        ("overall", summary.metrics_overall),
        ("credit_card", summary.metrics_credit_card),
    ):
        for metric, value in sorted(values.items()):
            metrics.labels(pipeline, slice_name, metric).set(value)
    if summary.blessed is not None:
        gauge("tfx_pipeline_model_blessed", "1 if the candidate was blessed").labels(pipeline).set(
            int(summary.blessed)
        )
    return registry


def write_run_metrics(
    summary: "RunSummary",
    step_seconds: dict[str, float],
    run_seconds: float,
    pipeline: str,
    settings: RunMetricsSettings,
    output_dir: str,
) -> str | None:
    """Writes the run's metrics as a textfile and/or pushes them to a Pushgateway.

    Args:
      summary: See `build_registry`.
      step_seconds: See `build_registry`.
      run_seconds: See `build_registry`.
      pipeline: See `build_registry`.
      settings: Where they go.
      output_dir: The run's output directory (the textfile goes to `metrics/` in it).

    Returns:
      The textfile's path, or None when none was written.
    """
    from prometheus_client import push_to_gateway, write_to_textfile

    registry = build_registry(summary, step_seconds, run_seconds, pipeline)
    path = None
    if settings.textfile:
        os.makedirs(os.path.join(output_dir, "metrics"), exist_ok=True)
        path = os.path.join(output_dir, "metrics", METRICS_FILE)
        write_to_textfile(path, registry)  # writes a temp file and renames it: never partial
    if settings.pushgateway_url:
        push_to_gateway(
            settings.pushgateway_url,
            job=settings.job,
            registry=registry,
            grouping_key={"pipeline": pipeline},
        )
    return path
