"""Beam runner settings and the Beam arguments each runner needs, for every Beam step.

One `BeamSettings` per environment (local, kubeflow) is turned into the `beam_pipeline_args`
TFX hands every Beam component (StatisticsGen, Transform, Evaluator, ...). Light: pydantic
only, so a config can be built and checked without importing Beam or TFX.
"""

import dataclasses
import os
from collections.abc import Sequence
from typing import Annotated, Any, Literal

import pydantic.dataclasses
from pydantic import Field

from typed_config import CONFIG, Settings, check_field

# Runner name in the config -> Beam's runner class name.
RUNNERS = {
    "direct": "DirectRunner",
    "portable": "PortableRunner",
    "flink": "FlinkRunner",
    "spark": "SparkRunner",
    "dataflow": "DataflowRunner",
}
# Offered by Beam but refused here, with the reason (probed with Beam 2.59, see
# /work/shared/REFERENCE.md "Scale-out facts").
REFUSED_RUNNERS = {
    "dask": "Beam's Dask runner cannot run TFDV, TFT or TFMA: it has no side inputs, never "
    "calls DoFn setup/start_bundle, and CombinePerKey returns uncombined values without an "
    "error; use direct, portable, flink, spark or dataflow",
}
# Runners whose workers run outside this process and so need the project's code staged.
REMOTE_RUNNERS = ("portable", "flink", "spark", "dataflow")
DirectMode = Literal["auto", "in_memory", "multi_processing", "multi_threading"]
EnvironmentType = Literal["", "EXTERNAL", "DOCKER", "PROCESS", "LOOPBACK"]
# From this source size `mode=auto` picks multi_processing. Measured here (2 cores, `make
# bench-scale`) at 1.5 M rows (190 MB of CSV): in_memory 440 s and 2.0 GB peak RSS against
# multi_processing's 478 s and 3.0 GB. No step holds the data any more (DataPrep sorts out of
# core, ExampleGen converts span by span, Transform does not materialize), so in_memory's
# memory stays flat, and each worker process pays its own TF import (~8 s CPU) for two cores'
# worth of parallelism. Past 1 GiB (~8 M rows) the parallelism is worth a larger machine's
# cores; on 2 cores set `mode=in_memory`.
DEFAULT_LARGE_DATA_BYTES = 1024 * 1024 * 1024


@dataclasses.dataclass(frozen=True)
class NodeArg:
    """One extra Beam argument for one step: `NodeId:--name=value` in a config."""

    node: str
    arg: str

    @classmethod
    def parse(cls, entry: str) -> "NodeArg":
        """Parses `NodeId:--name=value`.

        Raises:
          ConfigError: On an entry without a node id or whose argument is not `--...`.
        """
        node, sep, arg = entry.strip().partition(":")
        check_field(
            bool(sep) and bool(node) and arg.startswith("--"), "", "NodeId:--name=value", entry
        )
        return cls(node, arg)

    def __str__(self) -> str:
        return f"{self.node}:{self.arg}"


@pydantic.dataclasses.dataclass(frozen=True, config=CONFIG)
class BeamSettings(Settings):
    """Which Beam runner the pipeline's Beam steps use, and its options.

    Attributes:
      runner: `direct` (this process or local worker processes), `portable` (a Beam job
        service; the workers from `environment_*`), `flink`, `spark` (their Beam job
        servers, reached at `job_endpoint`), or `dataflow`.
      mode: DirectRunner mode: `auto` picks `in_memory` below `large_data_bytes` of source
        data and `multi_processing` above it.
      workers: DirectRunner worker processes/threads (0 = one per core); SDK workers per
        worker node for portable/flink/spark (`sdk_worker_parallelism`; Beam's Python job
        service reads `direct_num_workers` too); Dataflow's `max_num_workers`; 0 = the
        runner's default.
      large_data_bytes: Source size from which `mode=auto` picks multi_processing.
      data_bytes: Size of the source data, for `mode=auto` where the entry point cannot
        measure it (Kubeflow: the compiler never sees the data); None = measured (local) or
        small (Kubeflow).
      job_endpoint: Beam job service `host:port` (portable, flink, spark).
      environment_type: How SDK workers start: `EXTERNAL` (a worker pool, the default for
        portable/flink/spark), `DOCKER`, `PROCESS` or `LOOPBACK`; empty = the runner's default.
      environment_config: For EXTERNAL the worker pool's `host:port` (default
        `localhost:50000`, the pool sidecar of each Flink/Spark worker pod); for DOCKER the
        image.
      parallelism: Flink's default operator parallelism (0 = the cluster's default).
      temp_location: Scratch location for Beam (required for dataflow: `gs://...`).
      project: Google Cloud project (dataflow).
      region: Google Cloud region (dataflow).
      setup_file: The project's `setup.py`, staged for remote workers (portable runs on this
        machine); empty = the project is in the workers' image (`sdk_container_image`).
      sdk_container_image: Image remote SDK workers run (flink, spark, dataflow: the
        pipeline image, which has the project and TFX installed).
      node_args: Extra Beam arguments for one step only, `NodeId:--name=value` each (applied
        after the shared ones, so they win), e.g. `Transform:--direct_num_workers=8`.
    """

    runner: str = "direct"
    mode: DirectMode = "auto"
    workers: Annotated[int, Field(ge=0)] = 0
    large_data_bytes: Annotated[int, Field(ge=1)] = DEFAULT_LARGE_DATA_BYTES
    data_bytes: Annotated[int, Field(ge=0)] | None = None
    job_endpoint: str = ""
    environment_type: EnvironmentType = ""
    environment_config: str = ""
    parallelism: Annotated[int, Field(ge=0)] = 0
    temp_location: str = ""
    project: str = ""
    region: str = ""
    setup_file: str = ""
    sdk_container_image: str = ""
    node_args: tuple[NodeArg, ...] = ()

    @pydantic.field_validator("runner")
    @classmethod
    def _check_runner(cls, value: str) -> str:
        if value in REFUSED_RUNNERS:
            raise ValueError(REFUSED_RUNNERS[value])
        check_field(value in RUNNERS, "", f"one of {sorted(RUNNERS)}", value)
        return value

    @pydantic.field_validator("node_args", mode="before")
    @classmethod
    def _parse_node_args(cls, value: Any) -> Any:
        entries = value.split(",") if isinstance(value, str) else value
        if not isinstance(entries, list | tuple):
            return value
        return tuple(NodeArg.parse(e) if isinstance(e, str) else e for e in entries)

    @pydantic.model_validator(mode="after")
    def _check_runner_options(self) -> "BeamSettings":
        runner = self.runner
        if runner in ("portable", "flink", "spark"):
            # Without an endpoint Beam would download a job-server jar from Maven at run
            # time (flink, spark) or start an in-process one (portable): never what a
            # cluster run wants.
            check_field(
                bool(self.job_endpoint) and ":" in self.job_endpoint,
                "job_endpoint",
                f"host:port of the Beam job service for runner={runner}",
                self.job_endpoint,
            )
        if runner == "dataflow":
            check_field(
                self.temp_location.startswith("gs://"),
                "temp_location",
                "a gs:// location for runner=dataflow",
                self.temp_location,
            )
            check_field(bool(self.project), "project", "a project for runner=dataflow", "")
            check_field(bool(self.region), "region", "a region for runner=dataflow", "")
        check_field(
            self.parallelism == 0 or runner == "flink",
            "parallelism",
            "0 unless runner=flink (the only runner with that option)",
            self.parallelism,
        )
        check_field(
            self.mode in ("auto", "in_memory") or runner == "direct",
            "mode",
            "auto or in_memory unless runner=direct (a DirectRunner mode)",
            self.mode,
        )
        if self.setup_file:
            check_field(
                os.path.basename(self.setup_file) == "setup.py",
                "setup_file",
                "a path to a setup.py",
                self.setup_file,
            )
        return self


def direct_mode(settings: BeamSettings, data_bytes: int | None) -> str:
    """The DirectRunner mode: the configured one, or chosen from the data size for `auto`.

    Args:
      settings: Beam settings.
      data_bytes: Source size measured by the entry point, None when unknown there.

    Returns:
      `in_memory`, `multi_processing` or `multi_threading`.
    """
    if settings.mode != "auto":
        return settings.mode
    size = settings.data_bytes if settings.data_bytes is not None else data_bytes
    return (
        "multi_processing"
        if size is not None and size >= settings.large_data_bytes
        else ("in_memory")
    )


def _environment_args(settings: BeamSettings) -> list[str]:
    environment_type = settings.environment_type or "EXTERNAL"
    args = [f"--environment_type={environment_type}"]
    config = settings.environment_config
    if environment_type == "EXTERNAL":
        config = config or "localhost:50000"
    elif environment_type == "DOCKER":
        config = config or settings.sdk_container_image
    if config:
        args.append(f"--environment_config={config}")
    return args


def _staging_args(settings: BeamSettings) -> list[str]:
    # Any of these also stops TFX from building and staging an sdist of TFX itself
    # (tfx/utils/dependency_utils.py make_beam_dependency_flags): the project's setup.py
    # requires tfx, and the pipeline image has it installed.
    args = []
    if settings.setup_file:
        args.append(f"--setup_file={settings.setup_file}")
    if settings.sdk_container_image:
        args.append(f"--sdk_container_image={settings.sdk_container_image}")
    return args


def beam_pipeline_args(settings: BeamSettings, data_bytes: int | None = None) -> list[str]:
    """Builds the Beam arguments shared by every Beam step.

    `direct` + `in_memory` gets no arguments, and none is better: given any Beam argument,
    every Beam component first builds and stages an sdist of TFX itself (about 2 s each
    here), useless for an in-process runner.

    Args:
      settings: Beam settings.
      data_bytes: Source size in bytes when the entry point knows it (local runs).

    Returns:
      The arguments, `--name=value` each.
    """
    runner = settings.runner
    if runner == "direct":
        mode = direct_mode(settings, data_bytes)
        if mode == "in_memory":
            return []
        return [
            f"--runner={RUNNERS[runner]}",
            f"--direct_running_mode={mode}",
            f"--direct_num_workers={settings.workers}",
        ]
    args = [f"--runner={RUNNERS[runner]}"]
    if runner == "dataflow":
        args += [
            f"--project={settings.project}",
            f"--region={settings.region}",
            f"--temp_location={settings.temp_location}",
        ]
        if settings.workers:
            args.append(f"--max_num_workers={settings.workers}")
        return args + _staging_args(settings)
    args += [f"--job_endpoint={settings.job_endpoint}", *_environment_args(settings)]
    if settings.workers:
        args.append(f"--sdk_worker_parallelism={settings.workers}")
        if runner == "portable":
            # Beam's Python job service runs the job with FnApiRunner, which starts this
            # many workers per environment (fn_api_runner/fn_runner.py).
            args.append(f"--direct_num_workers={settings.workers}")
    if runner == "flink" and settings.parallelism:
        args.append(f"--parallelism={settings.parallelism}")
    if settings.temp_location:
        args.append(f"--temp_location={settings.temp_location}")
    return args + _staging_args(settings)


def node_beam_args(settings: BeamSettings, node_ids: Sequence[str]) -> dict[str, list[str]]:
    """Per-step extra Beam arguments, checked against the pipeline's node ids.

    Args:
      settings: Beam settings.
      node_ids: The pipeline's node ids.

    Returns:
      Node id -> extra arguments.

    Raises:
      ConfigError: If `node_args` names a node the pipeline does not have.
    """
    by_node: dict[str, list[str]] = {}
    for entry in settings.node_args:
        by_node.setdefault(entry.node, []).append(entry.arg)
    for node in by_node:
        check_field(node in node_ids, "beam.node_args", f"node ids from {list(node_ids)}", node)
    return by_node


def source_bytes(paths: Sequence[str]) -> int:
    """Total size of the source files (what `mode=auto` compares with large_data_bytes)."""
    return sum(os.path.getsize(path) for path in paths)


def apply_node_args(components: Sequence[Any], settings: BeamSettings) -> list[str]:
    """Adds each step's `node_args` to that TFX component (after the pipeline-wide args).

    TFX's `Pipeline` copies the pipeline-wide arguments into every Beam component's executor
    spec when it is built; `with_beam_pipeline_args` appends, and Beam keeps the last value
    of a repeated option, so a step's own arguments win.

    Args:
      components: The pipeline's components (`pipeline.components`).
      settings: Beam settings.

    Returns:
      The ids of the nodes changed.

    Raises:
      ConfigError: If `node_args` names an unknown node or one that runs no Beam job.
    """
    by_id = {c.id: c for c in components}
    changed = []
    for node, args in node_beam_args(settings, list(by_id)).items():
        component = by_id[node]
        check_field(
            hasattr(component, "with_beam_pipeline_args"),
            "beam.node_args",
            "a node that runs Beam jobs",
            node,
        )
        component.with_beam_pipeline_args(args)  # type: ignore[attr-defined]
        changed.append(node)
    return changed
