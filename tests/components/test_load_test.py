"""LoadTest on tiny real artifacts: a contract SavedModel served by a child `python -m serving`
(no `tensorflow_model_server` here), and the command line built for the production binary
checked against the flags TF Serving defines."""

import dataclasses
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import tensorflow as tf
from tfx.proto import pusher_pb2
from tfx.types import artifact_utils, standard_artifacts
from tfx.utils import proto_utils

import model_contract
import schemas
from components import ui_artifacts
from components.load_test import component as load_test_component
from components.load_test import executor as load_test
from components.load_test import server_process
from components.load_test.settings import PYTHON_SERVER, TF_SERVING, LoadTestSettings
from components.pusher import executor as pusher
from components.reports import markdown
from serving import schema
from serving.examples import ExampleBuilder
from tests.serving.support import fixture

pytestmark = pytest.mark.slow

PARAMS = {
    "model_name": "chicago_taxi",
    "example_split": "eval",
    "sample_size": 6,
    "max_p99_ms": 10_000.0,
    "max_p99_ms_tf_serving": 10_000.0,
    "load_timeout_s": 120.0,
    "concurrency": 2,
    "request_timeout_s": 30.0,
    "input_validation": "off",
}


def _serving_children() -> list[int]:
    """Live (not reaped or zombie) `-m serving` processes whose parent is this process."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read().split(b"\0")
        except OSError:
            continue
        state, ppid = stat[0], int(stat[1])
        if ppid == os.getpid() and state != "Z" and b"serving" in cmdline[1:3]:
            found.append(int(pid))
    return found


@pytest.fixture(scope="module")
def features():
    return schema.load_features(schemas.schema_path("taxi"))


@pytest.fixture
def eval_examples(tmp_path, features):
    """An ExampleGen-shaped Examples artifact: gzipped TFRecords of raw rows, `tips` included."""
    examples = standard_artifacts.Examples()
    examples.uri = str(tmp_path / "examples")
    examples.split_names = artifact_utils.encode_split_names(["train", "eval"])
    split_dir = tmp_path / "examples" / "Split-eval"
    split_dir.mkdir(parents=True)
    options = tf.io.TFRecordOptions(compression_type="GZIP")
    with tf.io.TFRecordWriter(str(split_dir / "data_tfrecord-00000-of-00001.gz"), options) as w:
        for example in ExampleBuilder(features).build_all(fixture.sample_rows()):
            # Eval data carries the label source, which the SERVING signatures ignore.
            example.features.feature["tips"].float_list.value.append(1.5)
            # CsvExampleGen writes a missing value as a feature with no list at all.
            example.features.feature["pickup_census_tract"].Clear()
            w.write(example.SerializeToString())
    return examples


def _model(tmp_path, features, name: str, **kwargs) -> standard_artifacts.Model:
    model = standard_artifacts.Model()
    model.uri = str(tmp_path / name)
    fixture.build_model(str(tmp_path / name / "Format-Serving"), features, **kwargs)
    return model


def _run(tmp_path, model, examples, evaluation_blessed: int | None = None, **params):
    outputs = {
        "blessing": [standard_artifacts.InfraBlessing()],
        "metrics": [ui_artifacts.Metrics()],
        "report": [ui_artifacts.Markdown()],
    }
    outputs["blessing"][0].uri = str(tmp_path / "out" / "blessing")
    outputs["metrics"][0].uri = str(tmp_path / "out" / "metrics")
    outputs["report"][0].uri = str(tmp_path / "out" / "report" / "value")
    inputs = {"model": [model], "examples": [examples]}
    if evaluation_blessed is not None:
        blessing = standard_artifacts.ModelBlessing()
        blessing.uri = str(tmp_path / "evaluation")
        blessing.set_int_custom_property("blessed", evaluation_blessed)
        inputs["model_blessing"] = [blessing]
    load_test.Executor().Do(inputs, outputs, {**PARAMS, **params})
    report = (tmp_path / "out" / "report" / "value").read_text()
    return outputs["blessing"][0], outputs["metrics"][0], report


def _push(tmp_path, model, infra_blessing) -> tuple[standard_artifacts.PushedModel, str, str]:
    evaluation = standard_artifacts.ModelBlessing()
    evaluation.uri = str(tmp_path / "evaluation")
    evaluation.set_int_custom_property("blessed", 1)
    pushed = standard_artifacts.PushedModel()
    pushed.uri = str(tmp_path / "pushed")
    report = ui_artifacts.Markdown()
    report.uri = str(tmp_path / "push_report" / "value")
    model_dir = str(tmp_path / "serving" / "chicago_taxi")
    destination = pusher_pb2.PushDestination(
        filesystem=pusher_pb2.PushDestination.Filesystem(base_directory=model_dir)
    )
    pusher.Executor().Do(
        {"model": [model], "model_blessing": [evaluation], "infra_blessing": [infra_blessing]},
        {"pushed_model": [pushed], pusher.PUSH_REPORT_KEY: [report]},
        {
            "push_destination": proto_utils.proto_to_json(destination),
            "custom_config": json.dumps({"provenance": {}}),
        },
    )
    return pushed, model_dir, (tmp_path / "push_report" / "value").read_text()


def test_a_good_model_is_blessed_with_measurements_and_pushed(
    tmp_path, features, eval_examples
) -> None:
    model = _model(tmp_path, features, "model")
    blessing, metrics, report = _run(tmp_path, model, eval_examples)
    assert blessing.get_int_custom_property("blessed") == 1, report
    assert (tmp_path / "out" / "blessing" / "INFRA_BLESSED").exists()
    # 1 warm-up Predict + 6 eval examples x (Predict, Classify, Regress).
    assert blessing.get_float_custom_property("requests") == 1 + 6 * 3
    assert blessing.get_float_custom_property("failures") == 0
    p50, p99 = (blessing.get_float_custom_property(k) for k in ("p50_ms", "p99_ms"))
    assert 0 < p50 <= p99 <= PARAMS["max_p99_ms"]
    assert 0 < blessing.get_float_custom_property("load_time_s") <= PARAMS["load_timeout_s"]
    assert blessing.get_string_custom_property("reason").startswith(
        "python -m serving: all 19 requests succeeded"
    )
    # The report and the metrics say which server was measured.
    assert blessing.get_string_custom_property("server") == PYTHON_SERVER
    assert metrics.get_string_custom_property("server") == PYTHON_SERVER
    assert "python -m serving: all 19 requests succeeded" in report
    assert metrics.get_float_custom_property("blessed") == 1
    assert metrics.get_float_custom_property("p99_ms") == p99
    assert report.startswith("# Pre-push load test: Blessed for push\n")
    assert "| sent: eval/Classify | 6 |" in report and "| sent: warmup/Predict | 1 |" in report
    assert _serving_children() == []

    pushed, model_dir, push_report = _push(tmp_path, model, blessing)
    assert pushed.get_string_custom_property(pusher.OUTCOME_PROPERTY) == pusher.PUSHED
    (version,) = model_contract.list_versions(tf.io.gfile, model_dir)
    manifest = model_contract.read_manifest(tf.io.gfile, os.path.join(model_dir, str(version)))
    assert manifest["infra_blessing_uri"] == blessing.uri
    assert f"| load test | {markdown.text(blessing.uri).markdown} |" in push_report


def test_a_model_whose_signature_fails_on_the_sample_is_not_blessed_nor_pushed(
    tmp_path, features, eval_examples
) -> None:
    # Parses `fare` as an int list: the eval examples carry it as floats, so every request
    # fails inside the model (the warm-up file is left out so the model still loads).
    wrong = [dataclasses.replace(f, kind=schema.INT) if f.name == "fare" else f for f in features]
    model = _model(tmp_path, wrong, "bad_model", warmup_rows=[])
    blessing, metrics, report = _run(tmp_path, model, eval_examples)
    assert blessing.get_int_custom_property("blessed") == 0
    assert (tmp_path / "out" / "blessing" / "INFRA_NOT_BLESSED").exists()
    assert blessing.get_float_custom_property("failures") == 6 * 3
    assert metrics.get_float_custom_property("failures") == 6 * 3
    reason = blessing.get_string_custom_property("reason")
    assert reason.startswith("python -m serving: 18 of 18 requests failed (eval ")
    assert "INVALID_ARGUMENT" in reason
    assert report.startswith("# Pre-push load test: NOT blessed")
    assert "First errors:" in report
    assert _serving_children() == []

    pushed, model_dir, push_report = _push(tmp_path, model, blessing)
    assert pushed.get_int_custom_property("pushed") == 0
    assert pushed.get_string_custom_property(pusher.OUTCOME_PROPERTY) == pusher.NOT_INFRA_BLESSED
    assert model_contract.list_versions(tf.io.gfile, model_dir) == []
    assert push_report.startswith("# Not pushed: the pre-push load test did not bless this model")
    assert "18 of 18 requests failed" in push_report


def test_an_impossible_p99_bound_is_not_blessed(tmp_path, features, eval_examples) -> None:
    model = _model(tmp_path, features, "model")
    blessing, _, report = _run(tmp_path, model, eval_examples, max_p99_ms=1e-6)
    assert blessing.get_int_custom_property("blessed") == 0
    assert blessing.get_float_custom_property("failures") == 0
    assert "is above the bound of 1e-06 ms" in blessing.get_string_custom_property("reason")
    assert "(bound 1e-06 ms)" in report
    assert _serving_children() == []


def test_a_model_that_does_not_load_in_time_is_not_blessed(
    tmp_path, features, eval_examples
) -> None:
    model = _model(tmp_path, features, "model")
    blessing, _, report = _run(tmp_path, model, eval_examples, load_timeout_s=0.5)
    assert blessing.get_int_custom_property("blessed") == 0
    assert blessing.get_string_custom_property("reason") == (
        "python -m serving: the model did not load within 0.5 s"
    )
    assert blessing.get_float_custom_property("load_time_s") == -1
    assert "did not load" in report
    assert _serving_children() == []


def test_a_model_the_server_cannot_load_is_not_blessed(tmp_path, eval_examples) -> None:
    model = standard_artifacts.Model()
    model.uri = str(tmp_path / "broken")
    serving_dir = tmp_path / "broken" / "Format-Serving"
    serving_dir.mkdir(parents=True)
    (serving_dir / "saved_model.pb").write_bytes(b"not a SavedModel")
    blessing, _, _ = _run(tmp_path, model, eval_examples)
    assert blessing.get_int_custom_property("blessed") == 0
    reason = blessing.get_string_custom_property("reason")
    assert reason.startswith(
        "python -m serving: the model server could not serve the model: version 1 failed"
    )
    assert _serving_children() == []


def test_a_model_the_evaluator_did_not_bless_is_not_load_tested(
    tmp_path, features, eval_examples
) -> None:
    model = _model(tmp_path, features, "model")
    blessing, _, report = _run(tmp_path, model, eval_examples, evaluation_blessed=0)
    assert blessing.get_int_custom_property("blessed") == 0
    assert blessing.get_float_custom_property("requests") == 0
    assert "the Evaluator did not bless" in blessing.get_string_custom_property("reason")
    assert "NOT blessed" in report


def test_the_server_is_stopped_when_the_load_raises(tmp_path, features) -> None:
    fixture.build_model(str(tmp_path / "base" / "chicago_taxi" / "1"), features)
    base = str(tmp_path / "base" / "chicago_taxi")
    with (
        pytest.raises(RuntimeError, match="boom"),
        server_process.serve(
            "chicago_taxi", base, str(tmp_path / "log"), time.monotonic() + 120
        ) as server,
    ):
        assert server.process is not None and _serving_children() == [server.process.pid]
        raise RuntimeError("boom")
    assert server.process.returncode is not None
    assert _serving_children() == []


def test_the_server_dies_with_a_killed_step(tmp_path, features) -> None:
    fixture.build_model(str(tmp_path / "base" / "chicago_taxi" / "1"), features)
    step = textwrap.dedent(
        f"""
        import time
        from components.load_test import server_process
        server = server_process.ServerProcess(
            "chicago_taxi", {str(tmp_path / "base" / "chicago_taxi")!r}, {str(tmp_path / "log")!r},
            server_process.free_loopback_port(),
        )
        server.start()
        server.wait_until_available(time.monotonic() + 120)
        print(server.process.pid, flush=True)
        time.sleep(600)
        """
    )
    parent = subprocess.Popen([sys.executable, "-c", step], stdout=subprocess.PIPE, text=True)
    try:
        server_pid = int(parent.stdout.readline())
        os.kill(parent.pid, signal.SIGKILL)  # as an OOM kill or a pod eviction would
        parent.wait(timeout=30)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and os.path.exists(f"/proc/{server_pid}"):
            with open(f"/proc/{server_pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    break
            time.sleep(0.1)
        alive = os.path.exists(f"/proc/{server_pid}")
        if alive:
            with open(f"/proc/{server_pid}/stat") as f:
                alive = f.read().rsplit(")", 1)[1].split()[0] != "Z"
        assert not alive, "the model server outlived its step"
    finally:
        parent.kill()


def test_the_component_takes_its_settings_as_one_typed_object() -> None:
    from tfx import types

    from pipeline import config as config_lib

    model = types.Channel(type=standard_artifacts.Model)
    examples = types.Channel(type=standard_artifacts.Examples)
    settings = LoadTestSettings(max_p99_ms=300.0, max_p99_ms_tf_serving=40.0, concurrency=3)
    component = load_test_component.LoadTest(model, examples, model_name="m", settings=settings)
    properties = component.exec_properties
    assert (properties["max_p99_ms"], properties["max_p99_ms_tf_serving"]) == (300.0, 40.0)
    assert properties["concurrency"] == 3
    with pytest.raises(ValueError, match="example_split"):
        load_test_component.LoadTest(
            model, examples, model_name="m", settings=settings, example_split=""
        )
    # Bounds are checked once, where settings are built, naming the field.
    with pytest.raises(config_lib.ConfigError, match=r"'settings\.load_test\.concurrency'"):
        config_lib.load_local_config(None, ["settings.load_test.concurrency=0"])
    assert settings.max_p99_ms_for(TF_SERVING) == 40.0
    assert settings.max_p99_ms_for(PYTHON_SERVER) == 300.0


# The flags `tensorflow_model_server` defines: every `tensorflow::Flag("...")` in
# tensorflow/serving `tensorflow_serving/model_servers/main.cc` at tag 2.16.1 (commit
# 0d726954f36a2b6c6bfb60a4caec311f2b3e3101), the version `tensorflow-serving-api` is pinned to
# and the KFP image copies the binary from; the same list at 2.19.1. The binary refuses to
# start on a flag it does not define, so a misspelled one would fail every load test on the
# cluster and nowhere here.
TF_SERVING_2_16_FLAGS = frozenset(
    [
        "port",
        "grpc_socket_path",
        "rest_api_port",
        "rest_api_num_threads",
        "rest_api_timeout_in_ms",
        "rest_api_enable_cors_support",
        "enable_batching",
        "batching_parameters_file",
        "model_config_file",
        "model_config_file_poll_wait_seconds",
        "model_name",
        "model_base_path",
        "num_load_threads",
        "num_unload_threads",
        "max_num_load_retries",
        "load_retry_interval_micros",
        "file_system_poll_wait_seconds",
        "flush_filesystem_caches",
        "tensorflow_session_parallelism",
        "tensorflow_intra_op_parallelism",
        "tensorflow_inter_op_parallelism",
        "use_alts_credentials",
        "platform_config_file",
        "saved_model_tags",
        "grpc_channel_arguments",
        "grpc_max_threads",
        "enable_model_warmup",
        "num_request_iterations_for_warmup",
        "version",
        "prefer_tflite_model",
        "enable_profiler",
        "thread_pool_factory_config_file",
        "mixed_precision",
        "skip_initialize_tpu",
        "enable_grpc_healthcheck_service",
    ]
)


def _flags(argv: list[str]) -> dict[str, str]:
    flags = {}
    for arg in argv:
        assert arg.startswith("--") and "=" in arg, f"not a --flag=value argument: {arg!r}"
        name, _, value = arg[2:].partition("=")
        flags[name] = value
    return flags


def test_the_production_server_command_uses_only_flags_tf_serving_defines(tmp_path) -> None:
    server = server_process.ServerProcess(
        "chicago_taxi",
        str(tmp_path / "base"),
        str(tmp_path / "work" / "server.log"),
        port=0,
        binary="/usr/bin/tensorflow_model_server",
    )
    argv = server.command()
    assert argv[0] == "/usr/bin/tensorflow_model_server"
    flags = _flags(argv[1:])
    assert set(flags) <= TF_SERVING_2_16_FLAGS, set(flags) - TF_SERVING_2_16_FLAGS
    # Reachable only from the step: a UNIX socket in its scratch folder, no TCP, no REST.
    assert flags["port"] == "0" and flags["rest_api_port"] == "0"
    assert flags["grpc_socket_path"] == str(tmp_path / "work" / "grpc.sock")
    assert server.address == f"unix:{tmp_path / 'work' / 'grpc.sock'}"
    assert flags["model_name"] == "chicago_taxi"
    assert flags["model_base_path"] == str(tmp_path / "base")
    assert server.server == TF_SERVING
    python = server_process.ServerProcess(
        "chicago_taxi", str(tmp_path / "base"), str(tmp_path / "log"), port=8123
    )
    assert python.server == PYTHON_SERVER and python.address == "127.0.0.1:8123"
    assert python.command()[1:3] == ["-m", "serving"]


def test_the_binary_on_path_is_the_server_measured(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert server_process.tf_serving_binary() is None
    binary = tmp_path / "tensorflow_model_server"
    binary.write_text("")  # Only looked up on PATH: this test never starts it.
    binary.chmod(0o755)
    assert server_process.tf_serving_binary() == str(binary)
