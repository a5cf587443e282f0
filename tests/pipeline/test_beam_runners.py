"""Beam runner arguments from config: DirectRunner mode from the data size, the golden
arguments of flink/spark/dataflow, refused runners, per-step arguments in the compiled spec,
and (slow) the whole pipeline on Beam's portable job service with an EXTERNAL worker pool."""

import contextlib
import dataclasses
import os
import re
import socket
import subprocess
import sys
import time

import pytest
import tensorflow as tf

import model_contract
from pipeline import beam as beam_lib
from pipeline import config as config_lib
from runners import local as local_runner
from runners.kubeflow import config as kubeflow_config_lib
from typed_config import ConfigError

GOLDEN_DIR = os.path.join(os.path.dirname(__file__), "golden", "beam_args")
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
IMAGE = "ghcr.io/example/tfx-taxi-kfp:0.1.0"
# The settings each golden file is built from (a kubeflow config: the workers run its image).
CLUSTER_RUNNERS = {
    "flink": [
        "beam.runner=flink",
        "beam.job_endpoint=flink-beam-jobserver.flink:8099",
        "beam.parallelism=8",
        "beam.workers=2",
        "beam.temp_location=/mnt/taxi/beam-tmp",
    ],
    "spark": [
        "beam.runner=spark",
        "beam.job_endpoint=spark-beam-jobserver.spark:8099",
        "beam.workers=2",
    ],
    "dataflow": [
        "beam.runner=dataflow",
        "pipeline_root=gs://my-bucket/root",
        "source_uri=gs://my-bucket/taxi",
        "beam.project=my-project",
        "beam.region=europe-west4",
        "beam.temp_location=gs://my-bucket/beam-tmp",
        "beam.workers=20",
    ],
    "portable": ["beam.runner=portable", "beam.job_endpoint=beam-jobserver:8099"],
}


def _beam(**values) -> beam_lib.BeamSettings:
    return config_lib.build(beam_lib.BeamSettings, values)


def test_direct_mode_follows_the_data_size_unless_set() -> None:
    auto = _beam(large_data_bytes=1000)
    assert beam_lib.beam_pipeline_args(auto, data_bytes=999) == []
    assert beam_lib.beam_pipeline_args(auto, data_bytes=1000) == [
        "--runner=DirectRunner",
        "--direct_running_mode=multi_processing",
        "--direct_num_workers=0",
    ]
    # Unknown size (Kubeflow without beam.data_bytes): the in-process runner.
    assert beam_lib.beam_pipeline_args(auto, data_bytes=None) == []
    # Kubeflow states the size in config; it wins over a measured one.
    assert "--direct_running_mode=multi_processing" in beam_lib.beam_pipeline_args(
        _beam(large_data_bytes=1000, data_bytes=5000), data_bytes=None
    )
    fixed = _beam(mode="multi_threading", workers=3)
    assert beam_lib.beam_pipeline_args(fixed, data_bytes=0)[1:] == [
        "--direct_running_mode=multi_threading",
        "--direct_num_workers=3",
    ]
    assert beam_lib.beam_pipeline_args(_beam(mode="in_memory"), data_bytes=10**12) == []


@pytest.mark.parametrize("runner", sorted(CLUSTER_RUNNERS))
def test_cluster_runner_args_match_golden(runner: str) -> None:
    config = kubeflow_config_lib.load_kubeflow_config(None, CLUSTER_RUNNERS[runner])
    args = config.beam_pipeline_args
    path = os.path.join(GOLDEN_DIR, f"{runner}.txt")
    if os.environ.get("UPDATE_GOLDEN"):
        with open(path, "w") as f:
            f.write("\n".join(args) + "\n")
    with open(path) as f:
        golden = f.read().splitlines()
    assert args == golden, f"{runner} args drifted from {path} (UPDATE_GOLDEN=1 rewrites it)"
    # Every cluster runner's workers get the project: the pipeline image, which also stops
    # TFX from staging an sdist of itself.
    assert f"--sdk_container_image={IMAGE}" in args


@pytest.mark.parametrize(
    ("overrides", "field", "why"),
    [
        (["beam.runner=dask"], "beam.runner", "no side inputs"),
        (["beam.runner=storm"], "beam.runner", "one of"),
        (["beam.runner=flink"], "beam.job_endpoint", "host:port"),
        (
            ["beam.runner=spark", "beam.job_endpoint=js:8099", "beam.parallelism=4"],
            "beam.parallelism",
            "flink",
        ),
        (
            ["beam.runner=dataflow", "beam.project=p", "beam.region=r"],
            "beam.temp_location",
            "gs://",
        ),
        (
            ["beam.runner=dataflow", "beam.temp_location=gs://b/t", "beam.region=r"],
            "beam.project",
            "project",
        ),
        (
            ["beam.runner=portable", "beam.job_endpoint=x:1", "beam.mode=multi_processing"],
            "beam.mode",
            "DirectRunner",
        ),
        (["beam.environment_type=KUBERNETES"], "beam.environment_type", "EXTERNAL"),
        (["beam.workers=-1"], "beam.workers", ">= 0"),
        (["beam.node_args=--x=1"], "beam.node_args", "NodeId:--name=value"),
    ],
)
def test_bad_beam_settings_fail_naming_the_field(overrides, field, why) -> None:
    for load in (config_lib.load_local_config, kubeflow_config_lib.load_kubeflow_config):
        with pytest.raises(ConfigError) as error:
            load(None, overrides)
        assert f"'{field}'" in str(error.value)
        assert why in str(error.value)


def test_dataflow_on_kubeflow_needs_gcs_paths() -> None:
    overrides = [o for o in CLUSTER_RUNNERS["dataflow"] if not o.startswith("source_uri")]
    with pytest.raises(ConfigError, match=r"'source_uri'.*gs://"):
        kubeflow_config_lib.load_kubeflow_config(None, overrides)


def test_local_remote_runner_stages_the_project_setup_file() -> None:
    config = config_lib.load_local_config(
        None, ["beam.runner=portable", "beam.job_endpoint=localhost:8099"]
    )
    args = local_runner.local_beam_args(config, data_bytes=10)
    setup_file = local_runner.project_setup_file()
    assert f"--setup_file={setup_file}" in args
    assert os.path.isfile(setup_file)


def test_node_args_reach_that_step_only_and_unknown_nodes_fail(tmp_path) -> None:
    config = config_lib.load_local_config(
        None,
        [
            f"output_dir={tmp_path}",
            "beam.mode=multi_processing",
            "beam.workers=2",
            "beam.node_args=Transform:--direct_num_workers=4",
        ],
    )
    pipeline = local_runner.build_local_pipeline(
        config, str(tmp_path), "f", "/s.pbtxt", None, served_model="none"
    )
    by_id = {c.id: c for c in pipeline.components}
    transform = by_id["Transform"].executor_spec.beam_pipeline_args
    statistics = by_id["StatisticsGen"].executor_spec.beam_pipeline_args
    assert transform[-1] == "--direct_num_workers=4"
    assert "--direct_num_workers=2" in statistics and "--direct_num_workers=4" not in statistics
    for node in ("NoSuchStep", "Trainer"):  # Trainer runs no Beam job
        bad = config_lib.load_local_config(None, [f"beam.node_args={node}:--x=1"])
        with pytest.raises(ConfigError, match=f"'beam.node_args'.*{node}"):
            local_runner.build_local_pipeline(
                bad, str(tmp_path), "f", "/s.pbtxt", None, served_model="none"
            )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _wait_for_port(port: int, process: subprocess.Popen, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args} exited with {process.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("localhost", port)) == 0:
                return
        time.sleep(0.5)
    raise TimeoutError(f"nothing listening on port {port} after {timeout_s}s")


@pytest.fixture()
def beam_services(tmp_path):
    """Beam's local job service and an EXTERNAL worker pool, as a cluster would run them."""
    env = dict(os.environ)
    # The pool starts each worker with the first `python` on PATH: this venv's, seeing the
    # worktree's code.
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    env["PYTHONPATH"] = REPO
    job_port, pool_port = _free_port(), _free_port()
    stack = contextlib.ExitStack()
    logs = {
        name: stack.enter_context((tmp_path / f"{name}.log").open("w"))
        for name in ("job_service", "pool")
    }
    commands = {
        "job_service": [
            sys.executable,
            "-m",
            "apache_beam.runners.portability.local_job_service_main",
            f"--port={job_port}",
        ],
        "pool": [
            sys.executable,
            "-m",
            "apache_beam.runners.worker.worker_pool_main",
            f"--service_port={pool_port}",
        ],
    }
    processes = {
        name: subprocess.Popen(command, env=env, stdout=logs[name], stderr=subprocess.STDOUT)
        for name, command in commands.items()
    }
    try:
        _wait_for_port(job_port, processes["job_service"])
        _wait_for_port(pool_port, processes["pool"])
        yield job_port, pool_port, tmp_path / "pool.log"
    finally:
        for process in processes.values():
            process.terminate()
        for process in processes.values():
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
        stack.close()


@pytest.mark.slow
def test_pipeline_runs_on_portable_runner_with_external_worker_pool(tmp_path, beam_services):
    job_port, pool_port, pool_log = beam_services
    config = config_lib.build(
        config_lib.LocalConfig,
        {
            "output_dir": str(tmp_path / "out"),
            "serve_after_run": False,
            "enable_cache": False,
            "beam": {
                "runner": "portable",
                "job_endpoint": f"localhost:{job_port}",
                "environment_type": "EXTERNAL",
                "environment_config": f"localhost:{pool_port}",
                "workers": 2,
            },
            "settings": {
                "max_rows": 300,
                "train_steps": 20,
                "eval_steps": 2,
                "hyperparameters": {"epochs": 1, "steps_per_execution": 10},
                # 300 rows: blessing is not what this test checks, the runner is.
                "evaluation": {"min_auc": 0.0, "min_auc_credit_card": 0.0, "max_auc_drop": 1.0},
                # Latency bounds are test_load_test.py's concern, not the runner's.
                "load_test": {"max_p99_ms": 10_000.0},
            },
        },
    )
    run = local_runner.run_local(config)
    assert run.source_uri
    versions = model_contract.list_versions(tf.io.gfile, config.model_dir)
    assert len(versions) == 1, "the run on the portable runner did not push a model"
    worker_ids = set(re.findall(r"worker_id=\"([^\"]+)\"", pool_log.read_text()))
    # Two workers per job from the pool, over several Beam jobs (StatisticsGen, Transform,
    # Evaluator, ...): the Beam steps ran in the pool's processes, not in this one.
    assert len(worker_ids) >= 2, pool_log.read_text()[-2000:]


def test_compiled_spec_carries_each_steps_beam_args() -> None:
    from runners.kubeflow import compiler

    example = os.path.join(REPO, "kubeflow", "pipeline", "config.example.json")
    flink = kubeflow_config_lib.load_kubeflow_config(example, CLUSTER_RUNNERS["flink"])
    config = dataclasses.replace(
        flink, beam=dataclasses.replace(flink.beam, node_args=("Transform:--parallelism=32",))
    )
    executors = compiler.compile_pipeline(config).pipeline_spec["deploymentSpec"]["executors"]
    with open(os.path.join(GOLDEN_DIR, "flink.txt")) as f:
        golden = f.read().splitlines()

    def args(label: str) -> list[str]:
        return executors[label]["container"]["args"]

    for step in ("StatisticsGen", "Transform", "Evaluator"):
        container_args = args(f"{step}_executor")
        assert container_args[container_args.index(golden[0]) :][: len(golden)] == golden, step
    assert args("Transform_executor")[-1] == "--parallelism=32"
    assert "--parallelism=32" not in args("StatisticsGen_executor")
    # TFX also hands the pipeline-wide args to non-Beam steps (step_builder.py), never a
    # step's own.
    assert "--parallelism=32" not in args("Trainer_executor")
