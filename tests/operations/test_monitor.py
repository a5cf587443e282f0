"""The monitor on request logs written by the server's logger: clean, shifted, invalid, stale."""

import csv
import json
import os
import pathlib
import time

import numpy as np
import pytest
import tensorflow as tf
from prometheus_client import CollectorRegistry

import schemas
from commands import cli
from components.data_prep import source as source_lib
from model_contract import CLASSIFY_METHOD
from operations import monitor
from serving import schema as serving_schema
from serving.examples import ExampleBuilder
from serving.request_log import RequestLogger
from serving.settings import RequestLogSettings

ROWS = 3000
SCHEMA = schemas.schema_path("taxi")


@pytest.fixture(scope="module")
def rows() -> list[dict[str, str]]:
    with open(os.path.join(source_lib.default_source(), "data.csv")) as f:
        reader = csv.DictReader(f)
        return [row for _, row in zip(range(ROWS), reader, strict=False)]


@pytest.fixture(scope="module")
def baseline(rows: list[dict[str, str]], tmp_path_factory: pytest.TempPathFactory) -> str:
    """Training statistics of the rows (TRAINING features, with `tips`), as StatisticsGen's."""
    builder = ExampleBuilder(serving_schema.load_features(SCHEMA, "TRAINING"))
    examples = [e.SerializeToString() for e in builder.build_all(rows)]
    statistics = monitor.statistics_of_examples(examples)
    path = str(tmp_path_factory.mktemp("baseline") / "FeatureStats.pb")
    with open(path, "wb") as f:
        f.write(statistics.SerializeToString())
    return path


def log_traffic(directory: str, rows: list[dict[str, object]], batch: int = 50) -> None:
    """Writes the rows as logged Classify and Predict requests with the server's real logger."""
    builder = ExampleBuilder(serving_schema.load_features(SCHEMA, "SERVING"))
    serialized = [e.SerializeToString() for e in builder.build_all(rows)]
    log = RequestLogger(
        RequestLogSettings(directory=directory, sampling_rate=1.0, queue_size=10_000),
        CollectorRegistry(),
    )
    log.start()
    for i in range(0, len(serialized), batch):
        chunk = np.empty(len(serialized[i : i + batch]), dtype=object)
        chunk[:] = serialized[i : i + batch]
        scores = np.full((len(chunk), 2), 0.5, dtype=np.float32)
        if (i // batch) % 2:
            classes = np.tile(np.array([b"0", b"1"], dtype=object), (len(chunk), 1))
            outputs = {"classes": classes, "scores": scores}
            log.offer_answer(
                "chicago_taxi", 1, "classify", CLASSIFY_METHOD, {"inputs": chunk}, outputs
            )
        else:
            outputs = {"probabilities": scores}
            log.offer_answer(
                "chicago_taxi", 1, "serving_default", None, {"examples": chunk}, outputs
            )
    log.close()


def resample(rows: list[dict[str, str]], seed: int, count: int) -> list[dict[str, object]]:
    """Rows drawn from the training rows: the same distribution as training."""
    picks = np.random.default_rng(seed).choice(len(rows), size=count, replace=False)
    return [dict(rows[i]) for i in picks]


def run_cli(logs: str, out: str, baseline: str, *extra: str) -> tuple[int, dict[str, object]]:
    code = cli.main(
        ["monitor", "--logs", logs, "--output-dir", out, "--baseline-statistics", baseline, *extra]
    )
    with open(os.path.join(out, "summary.json")) as f:
        return code, json.load(f)


def test_normal_traffic_is_clean(
    rows: list[dict[str, str]], baseline: str, tmp_path: pathlib.Path
) -> None:
    logs, out = str(tmp_path / "logs"), str(tmp_path / "out")
    log_traffic(logs, resample(rows, seed=1, count=1500))
    code, summary = run_cli(logs, out, baseline)
    assert code == monitor.EXIT_OK, summary["alerts"]
    assert summary["examples"] == 1500
    assert summary["alerts"] == [] and summary["schema_anomalies"] == {}
    measured = {(c["feature"], c["measure"]) for c in summary["skew"]}  # type: ignore[union-attr]
    assert ("trip_miles", "Jensen-Shannon divergence") in measured
    assert ("payment_type", "L-infinity distance") in measured
    assert not any(c["feature"] == "tips" for c in summary["skew"])  # type: ignore[union-attr]
    assert summary["drift"] == []  # No previous window yet.
    page = (tmp_path / "out" / "report.html").read_text()
    assert "<svg" in page and "trip_miles" in page
    assert "<script" not in page and "http" not in page and "@import" not in page
    prom = (tmp_path / "out" / "metrics.prom").read_text()
    assert 'taxi_monitor_feature_value{baseline="training",feature="trip_miles"' in prom
    assert "taxi_monitor_alerts 0.0" in prom
    assert os.path.isfile(os.path.join(out, monitor.STATISTICS_FILE))


def test_shifted_traffic_is_flagged_against_training_and_the_previous_window(
    rows: list[dict[str, str]], baseline: str, tmp_path: pathlib.Path
) -> None:
    out = str(tmp_path / "out")
    normal = str(tmp_path / "normal")
    log_traffic(normal, resample(rows, seed=2, count=1500))
    assert run_cli(normal, out, baseline)[0] == monitor.EXIT_OK

    shifted = resample(rows, seed=3, count=1500)
    for row in shifted:
        # A client sends metres.
        row["trip_miles"] = float(str(row["trip_miles"])) * 1609.344
        row["payment_type"] = "Cash"  # Card payments stop reaching the model.
    logs = str(tmp_path / "shifted")
    log_traffic(logs, shifted)
    code, summary = run_cli(logs, out, baseline)
    assert code == monitor.EXIT_ALERT
    alerts = "\n".join(summary["alerts"])  # type: ignore[arg-type]
    assert "skew vs training: feature 'trip_miles': Jensen-Shannon divergence" in alerts
    assert "skew vs training: feature 'payment_type': L-infinity distance" in alerts
    assert "drift vs previous window: feature 'trip_miles'" in alerts
    assert "drift vs previous window: feature 'payment_type'" in alerts
    unchanged = [c for c in summary["skew"] if c["feature"] == "fare"]  # type: ignore[union-attr]
    assert unchanged and all(c["passed"] for c in unchanged)
    prom = (tmp_path / "out" / "metrics.prom").read_text()
    assert (
        'taxi_monitor_feature_alert{baseline="previous_window",feature="payment_type",'
        'measure="L-infinity distance"} 1.0'
    ) in prom


def test_a_unit_change_in_served_traffic_alerts_for_that_feature_only(
    rows: list[dict[str, str]], baseline: str, tmp_path: pathlib.Path
) -> None:
    out = str(tmp_path / "out")
    normal = str(tmp_path / "normal")
    log_traffic(normal, resample(rows, seed=5, count=1500))
    assert run_cli(normal, out, baseline)[0] == monitor.EXIT_OK

    in_km = resample(rows, seed=6, count=1500)
    for row in in_km:
        # A client sends kilometres: inside the schema's domain, and Jensen-Shannon on
        # equal-width histograms barely moves (one long trip decides the bucket width).
        row["trip_miles"] = float(str(row["trip_miles"])) * 1.609344
    logs = str(tmp_path / "km")
    log_traffic(logs, in_km)
    code, summary = run_cli(logs, out, baseline)
    assert code == monitor.EXIT_ALERT
    measure = "Wasserstein distance / IQR"
    assert summary["schema_anomalies"] == {}
    alerts = summary["alerts"]
    assert alerts and all("feature 'trip_miles'" in a for a in alerts), alerts  # type: ignore
    text = "\n".join(alerts)  # type: ignore[arg-type]
    assert f"skew vs training: feature 'trip_miles': {measure}" in text
    assert f"drift vs previous window: feature 'trip_miles': {measure}" in text
    page = (tmp_path / "out" / "report.html").read_text()
    assert f"<td>trip_miles</td><td>{measure}</td>" in page and "<b>ALERT</b>" in page
    prom = (tmp_path / "out" / "metrics.prom").read_text()
    for window in ("training", "previous_window"):
        assert (
            f'taxi_monitor_feature_alert{{baseline="{window}",feature="trip_miles",'
            f'measure="{measure}"}} 1.0'
        ) in prom
    assert 'taxi_monitor_feature_alert{baseline="training",feature="fare",' in prom
    assert f'feature="fare",measure="{measure}"}} 0.0' in prom


def test_schema_violations_in_served_traffic_are_reported(
    rows: list[dict[str, str]], baseline: str, tmp_path: pathlib.Path
) -> None:
    traffic = resample(rows, seed=4, count=1000)
    for row in traffic[:20]:
        row["fare"] = -12.5  # The schema's float_domain has min 0.
    for row in traffic[20:40]:
        row["payment_type"] = "Bitcoin"  # Outside the payment_type domain.
    logs = str(tmp_path / "logs")
    log_traffic(logs, traffic)
    code, summary = run_cli(logs, str(tmp_path / "out"), baseline)
    assert code == monitor.EXIT_ALERT
    anomalies = summary["schema_anomalies"]
    assert set(anomalies) == {"fare", "payment_type"}  # type: ignore[arg-type]
    assert "Bitcoin" in anomalies["payment_type"]  # type: ignore[index]
    page = (tmp_path / "out" / "report.html").read_text()
    assert "Bitcoin" in page


def test_stale_training_data_warns(
    rows: list[dict[str, str]], baseline: str, tmp_path: pathlib.Path
) -> None:
    logs = str(tmp_path / "logs")
    log_traffic(logs, resample(rows, seed=5, count=1000))
    now = time.time()
    config = monitor.MonitorConfig(
        logs=logs,
        output_dir=str(tmp_path / "out"),
        schema_path=SCHEMA,
        baseline_statistics=baseline,
        max_training_age_days=30,
        training_end_time=now - 45 * 86400,
        now=now,
    )
    result = monitor.run_monitor(config)
    assert result.alerts == []
    assert result.training_data_age_days == 45
    assert result.warnings == ["the served model's newest training row is 45 days old (limit 30)"]
    assert result.exit_code == monitor.EXIT_STALE


def test_window_by_file_time(tmp_path: pathlib.Path) -> None:
    old, new = tmp_path / "a.tfrecord", tmp_path / "b.tfrecord"
    old.write_bytes(b"")
    new.write_bytes(b"")
    now = time.time()
    os.utime(old, (now - 7200, now - 7200))
    assert monitor.log_files(str(tmp_path), window_hours=1, now=now) == [str(new)]
    assert monitor.log_files(str(tmp_path / "*.tfrecord")) == [str(old), str(new)]


def test_errors_name_what_is_missing(baseline: str, tmp_path: pathlib.Path) -> None:
    out = str(tmp_path / "out")
    assert cli.main(["monitor", "--logs", str(tmp_path), "--output-dir", out]) == 2
    code = cli.main(
        ["monitor", "--logs", str(tmp_path), "--output-dir", out, "--baseline-statistics", baseline]
    )
    assert code == monitor.EXIT_ERROR
    assert not os.path.exists(os.path.join(out, "summary.json"))


def test_cronjob_manifest_runs_this_command() -> None:
    import kubernetes_validate

    from tests.serving.support import kustomize

    overlay = pathlib.Path(__file__).resolve().parents[2] / "kubeflow/tf-serving/overlays/pvc"
    docs = {(d["kind"], d["metadata"]["name"]): d for d in kustomize.render(overlay)}
    cronjob = docs[("CronJob", "tf-serving-monitor")]
    kubernetes_validate.validate(cronjob, "1.30.0", strict=True)
    pod = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert container["command"] == ["taxi", "monitor"]  # setup.py console_scripts
    args = cli.build_parser().parse_args(["monitor", *container["args"]])
    claims = {
        v["name"]: v["persistentVolumeClaim"]["claimName"]
        for v in pod["volumes"]
        if "persistentVolumeClaim" in v
    }
    mounts = {m["mountPath"]: claims.get(m["name"]) for m in container["volumeMounts"]}
    assert mounts[args.logs] == "tfx-serving-request-logs"
    assert mounts[args.output_dir] == "tfx-serving-monitor"
    assert args.model_dir.startswith("/models/") and mounts["/models"] == "tfx-serving-models"
    for claim in claims.values():
        assert ("PersistentVolumeClaim", claim) in docs


def test_only_example_tensors_of_predict_requests_are_read() -> None:
    from tensorflow_serving.apis import prediction_log_pb2

    example = tf.train.Example()
    example.features.feature["fare"].float_list.value.append(7.5)
    log = prediction_log_pb2.PredictionLog()
    inputs = log.predict_log.request.inputs
    inputs["examples"].CopyFrom(tf.make_tensor_proto([example.SerializeToString()]))
    inputs["payment_type"].CopyFrom(tf.make_tensor_proto([b"Cash"]))
    inputs["fare"].CopyFrom(tf.make_tensor_proto([7.5]))
    assert monitor.examples_of(log) == [example.SerializeToString()]


def test_a_crash_is_not_an_alert(rows: list[dict[str, str]], tmp_path: pathlib.Path) -> None:
    logs = str(tmp_path / "logs")
    log_traffic(logs, resample(rows, seed=6, count=100))
    out = str(tmp_path / "out")
    missing = str(tmp_path / "missing.pb")
    assert run_cli_code(logs, out, missing) == monitor.EXIT_ERROR
    corrupt = tmp_path / "corrupt.pb"
    corrupt.write_bytes(b"not a statistics proto")
    assert run_cli_code(logs, out, str(corrupt)) == monitor.EXIT_ERROR  # Not EXIT_ALERT (1).


def run_cli_code(logs: str, out: str, baseline: str) -> int:
    args = ["--logs", logs, "--output-dir", out, "--baseline-statistics", baseline]
    return cli.main(["monitor", *args])
