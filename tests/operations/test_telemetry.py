"""Traces and run metrics of local runs: spans of a real small run, Prometheus text that
parses back, the Pushgateway protocol, and no tracing at all by default."""

import http.server
import threading

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client.parser import text_string_to_metric_families

from operations import telemetry
from operations.summary import RunSummary
from pipeline import config as config_lib
from pipeline import pipeline as pipeline_lib
from serving.tracing import TracingSettings
from tests.support.production import small_run_config
from typed_config import ConfigError


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _summary() -> RunSummary:
    return RunSummary(
        run_id="r1",
        node_states={"DataPrep": "cached", "Trainer": "complete"},
        rows_per_split={"train": 240, "eval": 60},
        metrics_overall={"auc": 0.8, "example_count": 60.0},
        metrics_credit_card={"auc": 0.6},
        blessed=False,
    )


def test_run_metrics_textfile_parses_back_with_the_expected_series(tmp_path) -> None:
    path = telemetry.write_run_metrics(
        _summary(),
        {"DataPrep": 0.5, "Trainer": 12.0},
        20.0,
        "taxi",
        config_lib.RunMetricsSettings(),
        str(tmp_path),
    )
    assert path == str(tmp_path / "metrics" / "pipeline.prom")
    with open(path) as f:
        samples = _samples(f.read())
    p = ("pipeline", "taxi")
    assert samples[("tfx_pipeline_run_duration_seconds", (p,))] == 20.0
    assert samples[("tfx_pipeline_step_duration_seconds", (("node", "Trainer"), p))] == 12.0
    assert samples[("tfx_pipeline_step_cached", (("node", "DataPrep"), p))] == 1
    assert samples[("tfx_pipeline_step_cached", (("node", "Trainer"), p))] == 0
    assert samples[("tfx_pipeline_rows", (p, ("split", "eval")))] == 60
    assert samples[("tfx_pipeline_eval_metric", (("metric", "auc"), p, ("slice", "overall")))] == (
        0.8
    )
    key = ("tfx_pipeline_eval_metric", (("metric", "auc"), p, ("slice", "credit_card")))
    assert samples[key] == 0.6
    assert samples[("tfx_pipeline_model_blessed", (p,))] == 0
    assert samples[("tfx_pipeline_anomalies", (p,))] == 0
    assert ("tfx_pipeline_run_timestamp_seconds", (p,)) in samples
    # Only the run's own series: nothing of the process's default registry (python_gc_...).
    assert all(name.startswith("tfx_pipeline_") for name, _ in samples)


def test_no_blessing_series_when_the_evaluator_did_not_run(tmp_path) -> None:
    summary = RunSummary(run_id="r2", node_states={"DataPrep": "failed"})
    path = telemetry.write_run_metrics(
        summary, {}, 1.0, "taxi", config_lib.RunMetricsSettings(), str(tmp_path)
    )
    with open(path) as f:
        names = {name for name, _ in _samples(f.read())}
    assert "tfx_pipeline_model_blessed" not in names
    assert "tfx_pipeline_step_cached" in names


def test_metrics_are_pushed_to_the_pushgateway(tmp_path) -> None:
    received: list[tuple[str, str, bytes]] = []

    class Gateway(http.server.BaseHTTPRequestHandler):
        def do_PUT(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((self.command, self.path, body))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    gateway = http.server.HTTPServer(("127.0.0.1", 0), Gateway)
    thread = threading.Thread(target=gateway.serve_forever, daemon=True)
    thread.start()
    try:
        settings = config_lib.RunMetricsSettings(
            textfile=False, pushgateway_url=f"http://127.0.0.1:{gateway.server_port}"
        )
        path = telemetry.write_run_metrics(
            _summary(), {"Trainer": 3.0}, 4.0, "taxi", settings, str(tmp_path)
        )
    finally:
        gateway.shutdown()
    assert path is None and not (tmp_path / "metrics").exists()
    ((verb, url, body),) = received
    assert (verb, url) == ("PUT", "/metrics/job/tfx_pipeline/pipeline/taxi")
    samples = _samples(body.decode())
    key = ("tfx_pipeline_step_duration_seconds", (("node", "Trainer"), ("pipeline", "taxi")))
    assert samples[key] == 3.0


def test_tracing_is_off_by_default_and_validated() -> None:
    config = config_lib.load_local_config(None, [])
    assert config.tracing.exporter == "none" and config.metrics.textfile
    with pytest.raises(ConfigError, match=r"tracing\.otlp_endpoint"):
        config_lib.load_local_config(None, ["tracing.exporter=otlp"])
    config = config_lib.load_local_config(
        None,
        [
            "tracing.exporter=otlp",
            "tracing.otlp_endpoint=collector:4317",
            "metrics.pushgateway_url=http://gw:9091",
        ],
    )
    assert config.tracing.otlp_endpoint == "collector:4317"
    assert config.metrics.pushgateway_url == "http://gw:9091"


def test_steps_outside_a_run_make_no_spans() -> None:
    with telemetry.step_span("Trainer") as outcome:
        outcome.cached = True  # timed and ignored: no run, no tracer
    assert telemetry._active is None


def test_exporter_none_times_steps_without_recording_spans(tmp_path) -> None:
    with (
        telemetry.run_span(TracingSettings(), "taxi", str(tmp_path)) as steps,
        telemetry.step_span("DataPrep") as outcome,
    ):
        assert not outcome.recording  # so the runner reads no rows for it
    assert set(steps) == {"DataPrep"} and steps["DataPrep"] >= 0


def test_a_failing_step_fails_its_span_and_the_runs(tmp_path) -> None:
    provider, exporter = _memory_provider()
    with pytest.raises(RuntimeError, match="boom"):  # noqa: SIM117 (the nesting is the point)
        with telemetry.run_span(TracingSettings(), "taxi", str(tmp_path), provider):
            with telemetry.step_span("Transform"):
                raise RuntimeError("boom")
    step, run = exporter.get_finished_spans()
    assert step.attributes["pipeline.step.outcome"] == "failed"
    assert run.attributes["pipeline.outcome"] == "failed"
    assert not step.status.is_ok and not run.status.is_ok
    assert step.events[0].name == "exception"


def _memory_provider() -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


@pytest.fixture(scope="module")
def traced_run(tmp_path_factory):
    from operations import summary
    from runners import local as local_runner

    provider, exporter = _memory_provider()
    output_dir = str(tmp_path_factory.mktemp("traced"))
    config = small_run_config(
        output_dir,
        max_rows=300,
        train_steps=5,
        eval_steps=1,
        hyperparameters={"epochs": 1},
        evaluation={"min_auc": 0.0, "min_auc_credit_card": 0.0},
    )
    run = local_runner.run_local(config, tracer_provider=provider)
    result = summary.summarize_latest_run(config.metadata_path, config.settings.pipeline_name)
    path = telemetry.write_run_metrics(
        result, run.step_seconds, run.elapsed_s, "chicago-taxi", config.metrics, output_dir
    )
    return exporter.get_finished_spans(), run, result, path


@pytest.mark.slow
def test_a_run_traces_one_span_per_step_under_the_run_span(traced_run) -> None:
    spans, run, result, _ = traced_run
    (root,) = [s for s in spans if s.name == "pipeline.run"]
    steps = {s.attributes["pipeline.node_id"]: s for s in spans if s is not root}
    assert set(steps) == set(pipeline_lib.NODE_IDS)
    assert root.attributes["pipeline.outcome"] == "succeeded"
    assert root.attributes["pipeline.name"] == "chicago-taxi"
    for node, span in steps.items():
        assert span.name == f"pipeline.step {node}"
        assert span.context.trace_id == root.context.trace_id
        assert span.parent.span_id == root.context.span_id
        assert span.attributes["pipeline.step.cached"] is False
        assert span.attributes["pipeline.step.outcome"] == "complete"
        assert root.start_time <= span.start_time <= span.end_time <= root.end_time
    # Rows where the outputs record them: DataPrep's split and StatisticsGen's count agree.
    data_prep, stats = steps["DataPrep"].attributes, steps["StatisticsGen"].attributes
    assert data_prep["pipeline.step.rows.train"] + data_prep["pipeline.step.rows.eval"] == 300
    assert stats["pipeline.step.rows.train"] == result.rows_per_split["train"]
    assert stats["pipeline.step.rows.eval"] == data_prep["pipeline.step.rows.eval"]
    assert "pipeline.step.rows.train" not in steps["Trainer"].attributes
    assert set(run.step_seconds) == set(pipeline_lib.NODE_IDS)


@pytest.mark.slow
def test_a_run_writes_its_metrics_textfile(traced_run) -> None:
    _, _, result, path = traced_run
    with open(path) as f:
        samples = _samples(f.read())
    p = ("pipeline", "chicago-taxi")
    for node in pipeline_lib.NODE_IDS:
        assert samples[("tfx_pipeline_step_duration_seconds", (("node", node), p))] > 0
        assert samples[("tfx_pipeline_step_cached", (("node", node), p))] == 0
    assert samples[("tfx_pipeline_rows", (p, ("split", "train")))] == result.rows_per_split["train"]
    auc = samples[("tfx_pipeline_eval_metric", (("metric", "auc"), p, ("slice", "overall")))]
    assert auc == pytest.approx(result.metrics_overall["auc"])
    assert samples[("tfx_pipeline_model_blessed", (p,))] == 1
