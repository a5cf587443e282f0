"""Where the pipeline runs locally: TFX's BeamDagRunner with per-component progress."""

import dataclasses
import hashlib
import logging as pylogging
import os
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import tensorflow as tf
from absl import logging
from tfx import v1 as tfx
from tfx.orchestration import metadata

import schemas
from components.data_prep import source as source_lib
from components.latest_pushed_model import served as served_lib
from metadata import lineage_graph
from operations import lineage, telemetry
from pipeline import beam as beam_lib
from pipeline import config as config_lib
from pipeline import pipeline as pipeline_lib
from runners import tfx_beam
from runners.kubeflow.pod import writable

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

progress = pylogging.getLogger("pipeline.progress")


class _ProgressNodeDoFn(tfx_beam.NodeDoFn):
    """Runs one node like TFX's DoFn, reporting `[i/N] node started/finished (elapsed)`."""

    def run_node(self, node: tfx_beam.NodeRun, run: Callable[[], None]) -> None:
        """Runs the node inside a telemetry span, logging its progress."""
        position = f"[{node.position}/{node.total}]"
        progress.info("%s %s started", position, node.node_id)
        start = time.monotonic()
        try:
            with telemetry.step_span(node.node_id) as outcome:
                run()
                outcome.cached = _was_cached(node)
                if outcome.recording:
                    outcome.rows = _output_rows(node)
        except Exception as e:
            progress.error(
                "%s %s FAILED after %.1fs: %s", position, node.node_id, time.monotonic() - start, e
            )
            raise
        progress.info(
            "%s %s finished in %.1fs%s",
            position,
            node.node_id,
            time.monotonic() - start,
            " (cached)" if outcome.cached else "",
        )


def _latest_execution(node: tfx_beam.NodeRun) -> Any:
    with metadata.Metadata(node.mlmd_connection_config) as m:
        context = m.store.get_context_by_type_and_name("node", f"{node.pipeline_id}.{node.node_id}")
        executions = m.store.get_executions_by_context(context.id) if context else []
    return max(executions, key=lambda e: e.id) if executions else None


def _output_rows(node: tfx_beam.NodeRun) -> dict[str, int]:
    """Rows per split recorded by the node's latest outputs (for its span), where known."""
    latest = _latest_execution(node)
    if latest is None:
        return {}
    with metadata.Metadata(node.mlmd_connection_config) as m:
        outputs = lineage_graph.outputs(m.store, latest.id)
    return telemetry.output_rows([a for artifacts in outputs.values() for a in artifacts])


def _was_cached(node: tfx_beam.NodeRun) -> bool:
    """True when the node's latest execution in MLMD reused an earlier result."""
    latest = _latest_execution(node)
    return latest is not None and latest.last_known_state == latest.CACHED


class ProgressBeamDagRunner(tfx_beam.HookedBeamDagRunner):
    """BeamDagRunner whose nodes report progress as they start and finish."""

    node_do_fn = _ProgressNodeDoFn


@dataclasses.dataclass(frozen=True)
class LocalRun:
    """What a local run used and where it wrote.

    Attributes:
      config: The validated local config.
      source_uri: The source CSVs (file or directory) DataPrep read.
      source_fingerprint: `fingerprint_source(source_uri)` when the run started.
      served_model: `served_model_identity(model_dir)` when the run started.
      elapsed_s: Wall time of the pipeline run.
      step_seconds: Node id -> wall time of each step that ran.
    """

    config: config_lib.LocalConfig
    source_uri: str
    source_fingerprint: str
    served_model: str
    elapsed_s: float
    step_seconds: dict[str, float] = dataclasses.field(default_factory=dict)


def versioned_schema(output_dir: str) -> str:
    """Copies the curated schema to a content-addressed path and returns that path.

    ImportSchemaGen's cache key is the schema's path, not its content: a reviewed edit of
    `schemas/` must change the path, or cached runs would keep validating with the old schema.

    Args:
      output_dir: The run's output directory.

    Returns:
      `<output_dir>/schemas/taxi-<sha256 prefix>/schema.pbtxt`.
    """
    source = schemas.schema_path("taxi")
    with open(source, "rb") as f:
        content = f.read()
    path = os.path.join(
        output_dir, "schemas", f"taxi-{hashlib.sha256(content).hexdigest()[:12]}", "schema.pbtxt"
    )
    if not os.path.exists(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        staging = f"{path}.tmp-{os.getpid()}"
        with open(staging, "wb") as f:
            f.write(content)
        os.replace(staging, path)
    return os.path.abspath(path)


def project_setup_file() -> str:
    """The project's setup.py (next to the `pipeline` package), staged for remote workers."""
    return os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "setup.py")


def local_beam_args(config: config_lib.LocalConfig, data_bytes: int | None) -> list[str]:
    """The Beam arguments of a local run.

    A remote runner's workers need the project's code: unless the config names a setup file
    or a worker image, the project's setup.py is staged (`--setup_file`).

    Args:
      config: Local config.
      data_bytes: Source size, for `beam.mode=auto`.

    Returns:
      The arguments.
    """
    beam = config.beam
    if beam.runner in beam_lib.REMOTE_RUNNERS and not (beam.setup_file or beam.sdk_container_image):
        beam = dataclasses.replace(beam, setup_file=project_setup_file())
    return beam_lib.beam_pipeline_args(beam, data_bytes)


def build_local_pipeline(
    config: config_lib.LocalConfig,
    source_uri: str,
    source_fingerprint: str,
    schema_path: str,
    data_bytes: int | None = None,
    *,
    served_model: str,
) -> tfx.dsl.Pipeline:
    """Binds the pipeline definition to the local environment.

    Args:
      config: Local config.
      source_uri: Source CSVs (absolute path).
      source_fingerprint: `fingerprint_source(source_uri)`, DataPrep's cache key for the data.
      schema_path: Curated schema file (see `versioned_schema`).
      data_bytes: Source size in bytes (picks the DirectRunner mode for `beam.mode=auto`).
      served_model: `served_model_identity(model_dir)`: the cache key of the steps that
        compare with the served model (as the `ServedModel` task's output on KFP).

    Returns:
      The pipeline, with a SQLite MLMD store under the output directory.
    """
    pipeline = pipeline_lib.create_pipeline(
        config.settings,
        pipeline_root=os.path.abspath(config.pipeline_root),
        source_uri=source_uri,
        source_fingerprint=source_fingerprint,
        served_model=served_model,
        schema_path=schema_path,
        model_dir=os.path.abspath(config.model_dir),
        beam_pipeline_args=local_beam_args(config, data_bytes),
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
            os.path.abspath(config.metadata_path)
        ),
        enable_cache=config.enable_cache,
        push_provenance={
            "source_uri": source_uri,
            "source_fingerprint": source_fingerprint,
            **lineage.code_provenance(),
        },
    )
    beam_lib.apply_node_args(pipeline.components, config.beam)
    return pipeline


def run_local(
    config: config_lib.LocalConfig, tracer_provider: "TracerProvider | None" = None
) -> LocalRun:
    """Fingerprints the source data and runs the whole pipeline (DataPrep first) with BeamDagRunner.

    Args:
      config: Local config.
      tracer_provider: Where the run's spans go; None = as `config.tracing` says.

    Returns:
      What the run used.

    Raises:
      source_lib.DataError: If the source data cannot be listed or read (DataPrep raises it
        too, for malformed rows, after its progress line).
      Exception: Whatever a failing component raised (e.g. AnomaliesFoundError), after the
        progress line naming the component.
    """
    source_uri = os.path.abspath(config.source_data or source_lib.default_source())
    fingerprint = source_lib.fingerprint_source(source_uri)
    data_bytes = beam_lib.source_bytes(source_lib.list_source_files(source_uri))
    progress.info("Source %s (fingerprint %s, %d bytes)", source_uri, fingerprint[:12], data_bytes)
    model_dir = os.path.abspath(config.model_dir)
    # The Pusher and DriftGate write there: fail now, not at the end of the run.
    writable.check_writable(model_dir, writers="the Pusher and DriftGate")
    served_model = served_lib.served_model_identity(tf.io.gfile, model_dir)
    progress.info("Served model in %s: %s", model_dir, served_model)
    pipeline = build_local_pipeline(
        config,
        source_uri,
        fingerprint,
        versioned_schema(config.output_dir),
        data_bytes,
        served_model=served_model,
    )
    progress.info("Beam arguments: %s", pipeline.beam_pipeline_args or "(in-memory DirectRunner)")
    logging.info(
        "Running pipeline %s with root %s",
        pipeline.pipeline_info.pipeline_name,
        config.pipeline_root,
    )
    start = time.monotonic()
    with telemetry.run_span(
        config.tracing, pipeline.pipeline_info.pipeline_name, config.output_dir, tracer_provider
    ) as step_seconds:
        ProgressBeamDagRunner().run(pipeline)
    return LocalRun(
        config=config,
        source_uri=source_uri,
        source_fingerprint=fingerprint,
        served_model=served_model,
        elapsed_s=time.monotonic() - start,
        step_seconds=dict(step_seconds),
    )


def configure_logging(log_dir: str) -> str:
    """Sends progress lines to stdout and every INFO log line to a file.

    Args:
      log_dir: Directory for the run's log file.

    Returns:
      Path of the log file.
    """
    os.makedirs(log_dir, exist_ok=True)
    path = os.path.join(log_dir, time.strftime("run-%Y%m%d-%H%M%S.log"))
    root = pylogging.getLogger()
    root.setLevel(pylogging.INFO)
    # An imported library already called basicConfig (a stderr handler on the root logger).
    for handler in list(root.handlers):
        if type(handler) is pylogging.StreamHandler:
            root.removeHandler(handler)
    file_handler = pylogging.FileHandler(path)
    file_handler.setFormatter(
        pylogging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    root.addHandler(file_handler)
    logging.set_verbosity(logging.INFO)
    pylogging.captureWarnings(True)
    tf_logger = pylogging.getLogger("tensorflow")
    for handler in list(tf_logger.handlers):
        tf_logger.removeHandler(handler)
    tf_logger.propagate = True
    # The console gets progress lines and the summary; library chatter (TF, Beam, TFX) and
    # tracebacks go to the log file only.
    logging.get_absl_handler().setLevel(pylogging.CRITICAL)
    if not progress.handlers:
        console = pylogging.StreamHandler(sys.stdout)
        console.setFormatter(pylogging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
        progress.addHandler(console)
    progress.setLevel(pylogging.INFO)
    return path
