"""Executor of LoadTest: serves the candidate in a child model server and load-tests it.

Modelled on TFX's InfraValidator (`tfx/components/infra_validator/executor.py`): the result is
an `InfraBlessing` with the `blessed` custom property and an `INFRA_BLESSED` or
`INFRA_NOT_BLESSED` file, which TFX's Pusher reads (`model_utils.is_infra_validated`);
"not blessed" is an outcome, never an exception.
"""

import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from typing import Any

import grpc
import tensorflow as tf
from absl import logging
from tfx import types
from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import path_utils

import model_contract
from components.load_test import load, server_process
from components.load_test.report import Outcome, render_markdown
from components.load_test.settings import PYTHON_SERVER, TF_SERVING, LoadTestSettings

MODEL_KEY = standard_component_specs.MODEL_KEY
EXAMPLES_KEY = standard_component_specs.EXAMPLES_KEY
MODEL_BLESSING_KEY = standard_component_specs.MODEL_BLESSING_KEY
BLESSING_KEY = standard_component_specs.BLESSING_KEY
METRICS_KEY = "metrics"
REPORT_KEY = "report"
MODEL_NAME_KEY = "model_name"
EXAMPLE_SPLIT_KEY = "example_split"
SAMPLE_SIZE_KEY = "sample_size"
MAX_P99_MS_KEY = "max_p99_ms"
MAX_P99_MS_TF_SERVING_KEY = "max_p99_ms_tf_serving"
LOAD_TIMEOUT_S_KEY = "load_timeout_s"
CONCURRENCY_KEY = "concurrency"
REQUEST_TIMEOUT_S_KEY = "request_timeout_s"
INPUT_VALIDATION_KEY = "input_validation"
# TFX's InfraValidator marks (tfx/components/infra_validator/executor.py, _mark_blessed).
BLESSED_PROPERTY = "blessed"
REASON_PROPERTY = "reason"
_BLESSED_FILE = "INFRA_BLESSED"
_NOT_BLESSED_FILE = "INFRA_NOT_BLESSED"
# The one version the child server sees.
_VERSION = "1"


def read_warmup(model_path: str) -> list[bytes]:
    """The model's warm-up records (`model_contract.WARMUP_FILE`), [] when it has none."""
    path = os.path.join(model_path, model_contract.WARMUP_FILE)
    if not tf.io.gfile.exists(path):
        return []
    return [bytes(r) for r in tf.data.TFRecordDataset(path).as_numpy_iterator()]


def read_examples(examples: types.Artifact, split: str, limit: int) -> list[bytes]:
    """The first `limit` serialized tf.Examples of a split of an Examples artifact.

    Raises:
      ValueError: If the artifact has no such split or it holds no file.
    """
    split_names = artifact_utils.decode_split_names(examples.split_names)
    if split not in split_names:
        raise ValueError(f"examples at {examples.uri} have splits {split_names}, not {split!r}")
    files = sorted(
        tf.io.gfile.glob(os.path.join(artifact_utils.get_split_uri([examples], split), "*"))
    )
    if not files:
        raise ValueError(f"split {split!r} of {examples.uri} holds no file")
    # ExampleGen writes gzipped TFRecords (TFX's default payload format).
    dataset = tf.data.TFRecordDataset(files, compression_type="GZIP").take(limit)
    return [bytes(r) for r in dataset.as_numpy_iterator()]


def _stage(model_path: str, base_path: str) -> None:
    """Makes `model_path` the one version under `base_path` (a link when local, else a copy)."""
    version_dir = os.path.join(base_path, _VERSION)
    os.makedirs(base_path)
    if os.path.isdir(model_path):
        os.symlink(os.path.abspath(model_path), version_dir)
    else:
        model_contract.copy_tree(tf.io.gfile, model_path, version_dir)


def judge(
    result: load.LoadResult,
    load_time_s: float,
    max_p99_ms: float,
    load_timeout_s: float,
    server: str,
) -> Outcome:
    """Blessed only if requests were sent, none failed and the p99 latency is within bound."""
    p99 = result.percentile_ms(99)
    if result.requests == 0:
        blessed, reason = False, "no request to send: no warm-up record and no eval example"
    elif result.failures:
        first = result.errors[0] if result.errors else ""
        blessed, reason = False, f"{result.failures} of {result.requests} requests failed ({first})"
    elif p99 > max_p99_ms:
        blessed, reason = False, f"p99 latency {p99:.2f} ms is above the bound of {max_p99_ms:g} ms"
    else:
        blessed, reason = (
            True,
            (
                f"all {result.requests} requests succeeded; p99 {p99:.2f} ms <= {max_p99_ms:g} ms; "
                f"loaded in {load_time_s:.1f} s <= {load_timeout_s:g} s"
            ),
        )
    return Outcome(
        blessed, f"{server}: {reason}", result, load_time_s, max_p99_ms, load_timeout_s, server
    )


def load_test(
    model_path: str,
    examples: Sequence[bytes],
    *,
    model_name: str,
    settings: LoadTestSettings,
    binary: str | None,
) -> Outcome:
    """Serves the SavedModel at `model_path` in a child server local to the step, load-tests it.

    Sends the model's warm-up requests, then Predict (and Classify/Regress where the model has
    those signatures) for each example. The server is stopped before this returns, whatever
    happens.

    Args:
      model_path: The candidate SavedModel directory.
      examples: Serialized tf.Examples to send.
      model_name: Name to serve it as.
      settings: Bounds (the p99 bound of the server measured), concurrency, timeouts.
      binary: `tensorflow_model_server` to measure (`server_process.tf_serving_binary()`);
        None measures `python -m serving`.

    Returns:
      The outcome, naming the server measured; a model that cannot load, or fails a request,
      is not blessed.
    """
    server_name = TF_SERVING if binary else PYTHON_SERVER
    max_p99_ms = settings.max_p99_ms_for(server_name)
    load_timeout_s = settings.load_timeout_s
    request_timeout_s = settings.request_timeout_s

    def not_blessed(reason: str, result: load.LoadResult | None = None) -> Outcome:
        return Outcome(
            False, f"{server_name}: {reason}", result, None, max_p99_ms, load_timeout_s, server_name
        )

    try:
        warmup = read_warmup(model_path)
        warmup_calls = load.read_warmup_calls(warmup, model_name)
    except (ValueError, tf.errors.OpError) as e:
        return not_blessed(f"unreadable warm-up file in {model_path}: {e}")
    workdir = tempfile.mkdtemp(prefix="load-test-")
    try:
        base_path = os.path.join(workdir, model_name)
        _stage(model_path, base_path)
        log_path = os.path.join(workdir, "server.log")
        start = time.monotonic()
        try:
            with server_process.serve(
                model_name,
                base_path,
                log_path,
                start + load_timeout_s,
                input_validation=settings.input_validation,
                binary=binary,
            ) as server:
                load_time_s = time.monotonic() - start
                logging.info("Candidate AVAILABLE after %.1f s on %s", load_time_s, server.address)
                with grpc.insecure_channel(server.address) as channel:
                    try:
                        metadata = load.model_metadata(channel, model_name, request_timeout_s)
                        calls = warmup_calls + load.example_calls(
                            examples,
                            model_name,
                            load.predict_input_name(metadata),
                            load.signatures_of(metadata),
                        )
                    except grpc.RpcError as e:
                        return not_blessed(
                            f"GetModelMetadata failed: {e.code().name}: {e.details()}"
                        )
                    except ValueError as e:
                        return not_blessed(f"the served model cannot take examples: {e}")
                    result = load.run_load(channel, calls, settings.concurrency, request_timeout_s)
        except server_process.LoadTimeoutError:
            return not_blessed(f"the model did not load within {load_timeout_s:g} s")
        except server_process.ServerStartError as e:
            return not_blessed(f"the model server could not serve the model: {e}")
        return judge(result, load_time_s, max_p99_ms, load_timeout_s, server_name)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def record(
    outcome: Outcome,
    output_dict: dict[str, list[types.Artifact]],
    model_uri: str,
) -> None:
    """Writes the InfraBlessing, the Metrics and the Markdown report of an outcome."""
    blessing = artifact_utils.get_single_instance(output_dict[BLESSING_KEY])
    tf.io.gfile.makedirs(blessing.uri)
    marker = _BLESSED_FILE if outcome.blessed else _NOT_BLESSED_FILE
    with tf.io.gfile.GFile(os.path.join(blessing.uri, marker), "w") as f:
        f.write("")
    metrics = artifact_utils.get_single_instance(output_dict[METRICS_KEY])
    metrics.set_string_custom_property("display_name", "pre-push load test")
    for artifact in (blessing, metrics):
        for name, value in outcome.scalars().items():
            if isinstance(value, str):
                artifact.set_string_custom_property(name, value)
            elif name == BLESSED_PROPERTY and artifact is blessing:
                # An int, as TFX's Pusher reads it (`get_int_custom_property('blessed')`).
                artifact.set_int_custom_property(name, int(value))
            else:
                artifact.set_float_custom_property(name, float(value))
    report = artifact_utils.get_single_instance(output_dict[REPORT_KEY])
    tf.io.gfile.makedirs(os.path.dirname(report.uri))
    report.write(render_markdown(outcome, model_uri))


class Executor(base_executor.BaseExecutor):
    """Loads the candidate in tensorflow_model_server (else `python -m serving`); blesses it only
    if it serves."""

    def Do(
        self,
        input_dict: dict[str, list[types.Artifact]],
        output_dict: dict[str, list[types.Artifact]],
        exec_properties: dict[str, Any],
    ) -> None:
        """Load-tests the model (unless the Evaluator did not bless it) and records the outcome.

        Args:
          input_dict: `model`, `examples` and optionally `model_blessing`.
          output_dict: `blessing` (InfraBlessing), `metrics` (Metrics), `report` (Markdown).
          exec_properties: `model_name`, `example_split` and the `LoadTestSettings` fields
            but `enabled`.
        """
        self._log_startup(input_dict, output_dict, exec_properties)
        model = artifact_utils.get_single_instance(input_dict[MODEL_KEY])
        # Validated when the pipeline was built; typed again for the code below.
        settings = LoadTestSettings(
            sample_size=int(exec_properties[SAMPLE_SIZE_KEY]),
            max_p99_ms=float(exec_properties[MAX_P99_MS_KEY]),
            max_p99_ms_tf_serving=float(exec_properties[MAX_P99_MS_TF_SERVING_KEY]),
            load_timeout_s=float(exec_properties[LOAD_TIMEOUT_S_KEY]),
            concurrency=int(exec_properties[CONCURRENCY_KEY]),
            request_timeout_s=float(exec_properties[REQUEST_TIMEOUT_S_KEY]),
            input_validation=exec_properties[INPUT_VALIDATION_KEY],
        )
        binary = server_process.tf_serving_binary()
        server_name = TF_SERVING if binary else PYTHON_SERVER
        evaluation = input_dict.get(MODEL_BLESSING_KEY) or []
        if evaluation and not all(b.get_int_custom_property("blessed") == 1 for b in evaluation):
            # Nothing would be pushed: do not spend a server start on it.
            outcome = Outcome(
                False,
                "not load-tested: the Evaluator did not bless this model",
                None,
                None,
                settings.max_p99_ms_for(server_name),
                settings.load_timeout_s,
                server_name,
            )
        else:
            examples = read_examples(
                artifact_utils.get_single_instance(input_dict[EXAMPLES_KEY]),
                exec_properties[EXAMPLE_SPLIT_KEY],
                settings.sample_size,
            )
            outcome = load_test(
                path_utils.serving_model_path(model.uri, path_utils.is_old_model_artifact(model)),
                examples,
                model_name=exec_properties[MODEL_NAME_KEY],
                settings=settings,
                binary=binary,
            )
        logging.info("Load test: blessed=%s: %s", outcome.blessed, outcome.reason)
        record(outcome, output_dict, model.uri)
