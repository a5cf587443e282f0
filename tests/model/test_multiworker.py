"""MultiWorkerMirroredStrategy with two local CPU processes (chief + worker on loopback ports,
TF_CONFIG as the Training Operator sets it), each running the project's run_fn through the
TFJob replica entry on a tiny real tf.Transform output: both train, only the chief exports."""

import json
import os
import socket
import subprocess
import sys

import apache_beam as beam
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform.beam as tft_beam
from tensorflow_transform.tf_metadata import dataset_metadata, metadata_io

from model import features
from model import preprocessing as transform

# About 1 min of CPU; minutes of wall time when the machine is shared.
pytestmark = pytest.mark.slow

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ROWS = 96


def _rows(n: int) -> list[dict]:
    rng = np.random.default_rng(7)
    rows = []
    for i in range(n):
        fare = float(rng.uniform(5, 60))
        row = {
            "pickup_community_area": [int(rng.integers(1, 77))],
            "fare": [fare],
            "trip_start_month": [int(rng.integers(1, 13))],
            "trip_start_hour": [int(rng.integers(0, 24))],
            "trip_start_day": [int(rng.integers(1, 8))],
            "trip_start_timestamp": [1_400_000_000 + i],
            "pickup_latitude": [41.9],
            "pickup_longitude": [-87.6],
            "dropoff_latitude": [41.8],
            "dropoff_longitude": [-87.7],
            "trip_miles": [fare / 3],
            "pickup_census_tract": [],
            "dropoff_census_tract": [17031081500],
            "payment_type": [[b"Credit Card", b"Cash"][i % 2]],
            "company": [[b"Acme", b"Zed"][i % 2]] if i % 3 else [],
            "trip_seconds": [600],
            "dropoff_community_area": [32],
            "tips": [fare * float(rng.uniform(0, 0.4)) if i % 2 == 0 else 0.0],
        }
        rows.append({k: np.array(v) for k, v in row.items()})
    return rows


def _to_example(row):  # untyped: Beam would check the hint against TFT's output type
    example = tf.train.Example()
    for key, value in row.items():
        values = np.asarray(value).reshape(-1)
        if not values.size:
            continue  # A missing value, as CsvExampleGen writes an empty cell.
        target = example.features.feature[key]
        if values.dtype.kind in "iu":
            target.int64_list.value.extend(int(v) for v in values)
        elif values.dtype.kind == "f":
            target.float_list.value.extend(float(v) for v in values)
        else:
            target.bytes_list.value.extend(bytes(v) for v in values)
    return example.SerializeToString()


@pytest.fixture(scope="module")
def transformed(tmp_path_factory) -> str:
    """The Trainer's inputs: Transform's transform_fn + metadata, ExampleGen's GZIP examples."""
    root = tmp_path_factory.mktemp("transformed")
    output = str(root / "transform_output")
    raw_metadata = dataset_metadata.DatasetMetadata(features.load_schema())
    with beam.Pipeline() as p, tft_beam.Context(temp_dir=str(root / "tmp")):
        rows = p | beam.Create(_rows(ROWS))
        # Analysis only, as the pipeline's Transform (materialize=False): the Trainer applies
        # the transform graph to the raw examples itself.
        transform_fn = (rows, raw_metadata) | tft_beam.AnalyzeDataset(transform.preprocessing_fn)
        _ = transform_fn | tft_beam.WriteTransformFn(output)
        examples = rows | beam.Map(_to_example)
        for split in ("train", "eval"):
            _ = examples | f"Write{split}" >> beam.io.WriteToTFRecord(
                str(root / split / "part"),
                file_name_suffix=".gz",
                compression_type=beam.io.filesystem.CompressionTypes.GZIP,
            )
    metadata_io.write_metadata(raw_metadata, os.path.join(output, "metadata"))
    return str(root)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def test_two_workers_train_and_only_the_chief_exports(transformed, tmp_path) -> None:
    cluster = {"chief": [f"localhost:{_free_port()}"], "worker": [f"localhost:{_free_port()}"]}
    processes = {}
    for task in ("chief", "worker"):
        out = tmp_path / task
        fn_args = {
            "train_files": [os.path.join(transformed, "train", "*.gz")],
            "eval_files": [os.path.join(transformed, "eval", "*.gz")],
            "train_steps": 4,
            "eval_steps": 1,
            "transform_output": os.path.join(transformed, "transform_output"),
            "serving_model_dir": str(out / "serving"),
            "model_run_dir": str(out / "run"),
            "custom_config": {
                "hyperparameters": {"batch_size": 8, "epochs": 1, "steps_per_execution": 1}
            },
        }
        path = tmp_path / f"{task}.json"
        path.write_text(json.dumps(fn_args))
        env = dict(
            os.environ,
            PYTHONPATH=REPO,
            CUDA_VISIBLE_DEVICES="",
            TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": task, "index": 0}}),
        )
        processes[task] = subprocess.Popen(
            [sys.executable, "-m", "model.trainer.replica", "--fn-args", str(path)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
    outputs = {}
    try:
        for task, process in processes.items():
            outputs[task] = process.communicate(timeout=240)[0]
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
    for task, process in processes.items():
        assert process.returncode == 0, f"{task} failed:\n{outputs[task][-3000:]}"
    chief, worker = tmp_path / "chief", tmp_path / "worker"
    assert (chief / "serving" / "saved_model.pb").is_file()
    summary = json.loads((chief / "run" / "training_summary.json").read_text())
    assert summary["strategy"] == "multi_worker_mirrored"
    assert summary["replicas"] == 2
    assert summary["train_steps"] == 4
    # The worker trained in step with the chief (collectives) but wrote nothing.
    assert not (worker / "serving").exists() and not (worker / "run").exists()
    loaded = tf.saved_model.load(str(chief / "serving"))
    assert "serving_default" in loaded.signatures
