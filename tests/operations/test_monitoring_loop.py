"""One loop, end to end: a pushed model served through the production front, traffic logged by
the front, the monitor reading the log, and the alert for the one feature whose unit changed.

The pod is the `kubeflow/tf-serving` Deployment's, run here with its containers' own command
lines (`python -m serving` in place of tensorflow_model_server; tests/serving/support/
front_pod.py), every request sampled. Traffic comes from the real clients over gRPC and REST.
The monitor runs as the CronJob runs it (its command and args, localized), with the training
statistics given directly in place of the ML-Metadata lookup (no metadata service here).
"""

from __future__ import annotations

import csv
import json
import os
import pathlib
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

import schemas
from commands import cli
from components.data_prep import source as source_lib
from operations import monitor
from serving import schema as serving_schema
from serving.client import ClientSettings, ModelRef, PredictionClient, RestClient
from serving.examples import ExampleBuilder
from tests.serving.support import fixture, front_pod, kustomize

pytestmark = pytest.mark.slow

MODEL = "chicago_taxi"
ROWS = 3000
COUNT = 1500
SCHEMA = schemas.schema_path("taxi")
RESCALED = "trip_miles"
# Miles sent as metres: caught by the current Jensen-Shannon comparator (0.99 against 0.5).
FACTOR = 1609.344


@pytest.fixture(scope="module")
def rows() -> list[dict[str, str]]:
    with open(os.path.join(source_lib.default_source(), "data.csv")) as f:
        return [row for _, row in zip(range(ROWS), csv.DictReader(f), strict=False)]


def resample(rows: list[dict[str, str]], seed: int) -> list[dict[str, object]]:
    picks = np.random.default_rng(seed).choice(len(rows), size=COUNT, replace=False)
    return [dict(rows[i]) for i in picks]


@pytest.fixture(scope="module")
def baseline(rows: list[dict[str, str]], tmp_path_factory: pytest.TempPathFactory) -> str:
    """The training statistics (TRAINING features), as StatisticsGen computes them."""
    builder = ExampleBuilder(serving_schema.load_features(SCHEMA, "TRAINING"))
    statistics = monitor.statistics_of_examples(
        [e.SerializeToString() for e in builder.build_all(rows)]
    )
    path = str(tmp_path_factory.mktemp("baseline") / "FeatureStats.pb")
    with open(path, "wb") as f:
        f.write(statistics.SerializeToString())
    return path


@pytest.fixture(scope="module")
def pushed(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The models claim: `<models>/chicago_taxi/1`, a contract SavedModel as pushed."""
    models = tmp_path_factory.mktemp("claim") / "models"
    features = serving_schema.load_features(SCHEMA)
    fixture.build_model(str(models / MODEL / "1"), features, seed=1)
    return str(models)


def send(pod: front_pod.Pod, rows: list[dict[str, object]], batch: int = 50) -> int:
    """Sends the rows through the front, in turn as gRPC Predict/Classify and REST
    predict/classify calls; returns the number of calls."""
    builder = ExampleBuilder(serving_schema.load_features(SCHEMA))
    examples = [e.SerializeToString() for e in builder.build_all(rows)]
    model = ModelRef(MODEL)
    grpc_client = PredictionClient(ClientSettings(pod.grpc, deadline_s=30, max_retries=0))
    rest = RestClient(pod.rest, timeout_s=30)
    calls = 0
    try:
        for i in range(0, len(examples), batch):
            chunk = examples[i : i + batch]
            kind = calls % 4
            if kind == 0:
                assert grpc_client.predict(model, chunk).version == 1
            elif kind == 1:
                assert len(grpc_client.classify(model, chunk).classes) == len(chunk)
            elif kind == 2:
                assert rest.predict(model, chunk).outputs
            else:
                assert len(rest.classify(model, chunk).classes) == len(chunk)
            calls += 1
    finally:
        grpc_client.close()
        rest.close()
    return calls


def monitor_args() -> list[str]:
    """The CronJob's monitor command line (from the rendered pvc overlay)."""
    overlay = front_pod.ROOT / "kubeflow/tf-serving/overlays/pvc"
    docs = {(d["kind"], d["metadata"]["name"]): d for d in kustomize.render(overlay)}
    pod = docs[("CronJob", "tf-serving-monitor")]["spec"]["jobTemplate"]["spec"]["template"]
    [container] = pod["spec"]["containers"]
    assert container["command"] == ["taxi", "monitor"]  # the console script (setup.py)
    return list(container["args"])


def run_monitor(
    pod: front_pod.Pod, out: str, baseline: str, window_hours: float
) -> tuple[int, dict[str, Any], str]:
    """The CronJob's command on what the front logged; (exit code, summary, metrics.prom)."""
    paths = {"/request-logs": pod.request_logs, "/monitor": out}
    args = front_pod.localize(monitor_args(), {}, paths, **{"window-hours": str(window_hours)})
    # The CronJob finds the training statistics (and the training data's age, for
    # --max-training-age-days) through ML-Metadata from the push manifest; here the statistics
    # are given directly, so the age is unknown and that check is left out.
    lineage = ("--metadata=", "--model-dir=", "--max-training-age-days=")
    args = [a for a in args if not a.startswith(lineage)]
    args.append(f"--baseline-statistics={baseline}")
    code = cli.main(["monitor", *args])
    with open(os.path.join(out, "summary.json")) as f:
        summary = json.load(f)
    return code, summary, pathlib.Path(out, "metrics.prom").read_text()


def alert_gauges(prom: str) -> dict[tuple[str, str, str], float]:
    """taxi_monitor_feature_alert by (baseline, feature, measure), read with Prometheus' parser."""
    found = {}
    for family in text_string_to_metric_families(prom):
        if family.name == "taxi_monitor_feature_alert":
            for sample in family.samples:
                labels = sample.labels
                found[(labels["baseline"], labels["feature"], labels["measure"])] = sample.value
    return found


@pytest.fixture()
def start(pushed: str, tmp_path: pathlib.Path) -> Iterator[Callable[[], front_pod.Pod]]:
    started: list[front_pod.Pod] = []

    def run() -> front_pod.Pod:
        pod = front_pod.start_pod(
            tmp_path / "pod", pushed, front_flags={"request_log_sampling_rate": "1.0"}
        )
        started.append(pod)
        return pod

    yield run
    for pod in started:
        pod.stop()


def test_a_unit_change_in_served_traffic_alerts_for_that_feature_only(
    rows: list[dict[str, str]],
    baseline: str,
    start: Callable[[], front_pod.Pod],
    tmp_path: pathlib.Path,
) -> None:
    out = str(tmp_path / "monitor")
    # Hour 1: normal traffic.
    pod = start()
    calls = send(pod, resample(rows, seed=11))
    pod.wait_written(calls)
    pod.stop()  # closes its log file (the next pod starts new ones)
    code, summary, prom = run_monitor(pod, out, baseline, window_hours=1)
    assert code == monitor.EXIT_OK, summary["alerts"]
    assert summary["examples"] == COUNT
    assert summary["alerts"] == [] and summary["schema_anomalies"] == {}
    assert set(alert_gauges(prom).values()) == {0.0}
    # Hour 2: the same kind of traffic, with one feature sent in another unit.
    hour_ago = time.time() - 2 * 3600
    for name in os.listdir(pod.request_logs):
        os.utime(os.path.join(pod.request_logs, name), (hour_ago, hour_ago))
    pod = start()
    rescaled = resample(rows, seed=12)
    for row in rescaled:
        row[RESCALED] = float(str(row[RESCALED])) * FACTOR
    calls = send(pod, rescaled)
    pod.wait_written(calls)
    code, summary, prom = run_monitor(pod, out, baseline, window_hours=1)
    assert code == monitor.EXIT_ALERT
    assert summary["examples"] == COUNT  # this window only
    alerts = summary["alerts"]
    assert alerts and all(f"feature '{RESCALED}'" in a for a in alerts), alerts
    assert any(a.startswith("skew vs training") for a in alerts)
    assert any(a.startswith("drift vs previous window") for a in alerts)
    gauges = alert_gauges(prom)
    firing = {key for key, value in gauges.items() if value == 1.0}
    assert firing and {feature for _, feature, _ in firing} == {RESCALED}
    assert {baseline for baseline, _, _ in firing} == {"training", "previous_window"}
    assert len(gauges) > len(firing)  # every other feature was measured and stayed quiet
