"""Runs a compiled KFP v2 spec here, step by step, as open-source KFP's v2 backend does.

Modelled on kubeflow/pipelines `backend/src/v2` (releases 2.5.0 to 2.17.0); each behaviour
names its Go file. Per root DAG task in dependency order the *driver* part resolves inputs
(constants, pipeline parameters, upstream output parameters and artifacts from the metadata
store), provisions outputs (`<run root>/<task>/<uuid>/<key>`, plus `executor-logs`), computes
the cache fingerprint and reuses an earlier execution on a hit; the *launcher* part gives the
step a pod (its own mount namespace with `/minio`, `/gcs`, `/s3`, `/tmp/kfp_outputs`,
`/tmp/kfp` bound to per-task folders), downloads inputs, fills placeholders, runs the command,
reads the ExecutorOutput strictly, collects output parameters, uploads outputs and records them
in a real ML-Metadata store (SQLite) as KFP's driver and launcher record them: pipeline and
run contexts, an execution per task with INPUT/OUTPUT events keyed by input/output name. The
backend's state (object store, ML-Metadata, the cache table) lives in one directory, so
successive runs can hit the cache; steps see the ML-Metadata file at `POD_METADATA_PATH`.
"""

import dataclasses
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping
from typing import Any

from absl import logging
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2

from devtools.kfp_backend import cache as cache_lib
from devtools.kfp_backend.mlmd import (
    CONTAINER_EXECUTION_TYPE,
    IMPORTER_EXECUTION_TYPE,
    MetadataStore,
    PipelineRun,
)
from devtools.kfp_backend.objectstore import ObjectStore
from runners.kubeflow import spec as spec_lib
from runners.kubeflow.pod.container import EXECUTOR_LOGS_KEY, local_path_for_uri

# `backend/src/v2/config/env.go`: the root when neither the run nor the ConfigMap gives one.
DEFAULT_PIPELINE_ROOT = "minio://mlpipeline/v2/artifacts"
# Key of the `kfp-launcher` ConfigMap the root DAG driver reads (`config/env.go`).
CONFIG_KEY_PIPELINE_ROOT = "defaultPipelineRoot"
# `component/launcher_v2.go` OutputMetadataFilepath, used up to 2.14.
LEGACY_OUTPUT_FILE = "/tmp/kfp_outputs/output_metadata.json"
# `driver/driver.go` provisionOutputs: where each output parameter's file goes.
OUTPUT_PARAMETER_DIR = "/tmp/kfp/outputs"
# What a pod has that is per task: the launcher's artifact mounts and its output files.
POD_MOUNTS = ("/minio", "/gcs", "/s3", "/tmp/kfp_outputs", "/tmp/kfp")
# Where a step finds the backend's ML-Metadata SQLite file. On a cluster steps reach MLMD over
# gRPC (`metadata-grpc-service`); here the store's folder is bound at this path in every pod, so
# a spec compiled with `KubeflowConfig.emulated_metadata_sqlite = POD_METADATA_PATH` reads it.
METADATA_MOUNT = "/kfp-metadata"
METADATA_FILE = "metadata.sqlite"
POD_METADATA_PATH = f"{METADATA_MOUNT}/{METADATA_FILE}"
_PLACEHOLDER_RE = re.compile(r"\{\{\$[^}]*\}\}")
_NAMESPACE = "kubeflow"


class BackendError(RuntimeError):
    """The emulated backend refused or failed the run (driver/launcher error, named)."""


class StepFailedError(BackendError):
    """A step's command exited non-zero or ran over time; the message has its log tail."""


class PodIsolationError(BackendError):
    """Steps cannot get their own mount namespace here (no `unshare -m`: CAP_SYS_ADMIN)."""


@dataclasses.dataclass(frozen=True)
class BackendVersion:
    """A KFP backend release; decides the behaviours that changed between releases."""

    major: int
    minor: int
    patch: int = 0

    @classmethod
    def parse(cls, text: str) -> "BackendVersion":
        """Parses `2.14.0`.

        Raises:
          ValueError: For anything else or a release outside 2.5 to 2.17.
        """
        match = re.fullmatch(r"(\d+)\.(\d+)(?:\.(\d+))?", text)
        if not match:
            raise ValueError(f"backend_version must look like 2.14.0, got {text!r}")
        version = cls(int(match[1]), int(match[2]), int(match[3] or 0))
        if not (2, 5) <= (version.major, version.minor) <= (2, 17):
            raise ValueError(f"backend_version {text!r}: only 2.5.0 to 2.17.x are modelled")
        return version

    @property
    def task_identity(self) -> str:
        """`pre-2.14`: executions keyed by `taskInfo.name`; `2.14+`: by the task key.

        Up to 2.13 the driver names an execution after the task's display name but looks
        producers up by task key (`driver/driver.go`, `metadata/client.go` GetExecutionsInDAG);
        from 2.14 the compiler passes the key as `--task_name` and both agree.
        """
        return "2.14+" if (self.major, self.minor) >= (2, 14) else "pre-2.14"

    @property
    def output_file_in_task_root(self) -> bool:
        """From 2.15 the ExecutorOutput file is `<local task root>/output_metadata.json`."""
        return (self.major, self.minor) >= (2, 15)


@dataclasses.dataclass
class TaskRun:
    """What one task did.

    Attributes:
      name: DAG task key.
      task_name: The name its execution is recorded under (display name before 2.14).
      state: `COMPLETE` (ran) or `CACHED` (reused an earlier execution).
      execution_id: Its execution in the metadata store.
      fingerprint: Its cache fingerprint ("" when caching is off for it).
      outputs: Output key -> RuntimeArtifact JSON as downstream tasks receive it (name = MLMD
        id, untyped, metadata after the MLMD round trip); `executor-logs` included.
      output_titles: Output key -> schema title recorded in the metadata store.
      parameters: Output parameter values.
      seconds: Wall time.
    """

    name: str
    task_name: str
    state: str
    execution_id: int
    fingerprint: str
    outputs: dict[str, dict[str, Any]]
    output_titles: dict[str, str]
    parameters: dict[str, Any]
    seconds: float


@dataclasses.dataclass
class RunResult:
    """One run of a spec.

    Attributes:
      run_id: Run id (in output URIs).
      pipeline_root: The run's root: `<root>/<pipeline name>/<run id>`.
      tasks: Task key -> TaskRun, in execution order.
    """

    run_id: str
    pipeline_root: str
    tasks: dict[str, TaskRun]

    def states(self) -> dict[str, str]:
        """Task key -> `COMPLETE` or `CACHED`."""
        return {name: task.state for name, task in self.tasks.items()}


def check_pod_isolation() -> None:
    """Checks that a step can get its own mount namespace and the mount points exist.

    Raises:
      PodIsolationError: Saying what is missing (run as root / with CAP_SYS_ADMIN).
    """
    if shutil.which("unshare") is None:
        raise PodIsolationError("`unshare` (util-linux) is not installed: steps cannot get a pod")
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        raise PodIsolationError(
            "`unshare -m true` failed: the emulated backend gives each step its own mount "
            "namespace (/minio, /gcs, /s3 as in a KFP pod) and needs root or CAP_SYS_ADMIN "
            f"(e.g. a privileged CI container): {probe.stderr.strip()}"
        )
    for mount_point in (*POD_MOUNTS, METADATA_MOUNT):
        try:
            os.makedirs(mount_point, exist_ok=True)
        except OSError as e:
            raise PodIsolationError(f"cannot create mount point {mount_point}: {e}") from e


def check_accepted(pipeline_spec: Mapping[str, Any]) -> None:
    """Refuses what the backend refuses before running anything.

    The API server takes schema version 2.1.0 only (`apiserver/template/v2_template.go`); the
    Argo compiler implements container and importer executors only, rejecting resolvers
    (`compiler/argocompiler/dag.go`).

    Raises:
      spec_lib.UnsupportedConstructError: Naming what is refused.
    """
    version = pipeline_spec.get("schemaVersion")
    if version != "2.1.0":
        raise spec_lib.UnsupportedConstructError(
            f"KFP only supports schema version 2.1.0, but the pipeline spec has version {version}"
        )
    for label, executor in sorted(pipeline_spec["deploymentSpec"]["executors"].items()):
        kinds = sorted(set(executor) - {"container", "importer"})
        if kinds:
            raise spec_lib.UnsupportedConstructError(
                f"executor {label}: {kinds[0]} executors not implemented"
            )


def resolve_pipeline_root(run_pipeline_root: str | None, launcher_config: Mapping[str, str]) -> str:
    """Returns the root as the root DAG driver picks it (`driver/root_dag.go`, `config/env.go`).

    The run's `pipeline_root` wins, then the `kfp-launcher` ConfigMap's `defaultPipelineRoot`,
    then `minio://mlpipeline/v2/artifacts`. The spec's `defaultPipelineRoot` is never read.

    Raises:
      BackendError: For a root whose provider is not gs, s3 or minio (`GetStoreSessionInfo`).
    """
    root = run_pipeline_root or launcher_config.get(CONFIG_KEY_PIPELINE_ROOT) or ""
    root = root or DEFAULT_PIPELINE_ROOT
    if local_path_for_uri(root) is None:
        raise BackendError(
            f"Encountered unsupported provider in provider config for pipeline root {root!r} "
            "(the v2 launcher supports gs://, s3://, minio://)"
        )
    return root


def store_session_info(root: str) -> str:
    """The `store_session_info` KFP records for a root with no `kfp-launcher` providers.

    Defaults of `config/env.go` GetStoreSessionInfo (minio: the in-cluster MinIO and its
    secret; gs/s3: credentials from the pod's environment), JSON as Go marshals
    `objectstore.SessionInfo`.
    """
    provider = root.split("://", 1)[0]
    params = {"fromEnv": "true"}
    if provider == "minio":
        params = {
            "accessKeyKey": "accesskey",
            "disableSSL": "true",
            "endpoint": "minio-service.kubeflow:9000",
            "fromEnv": "false",
            "region": "minio",
            "secretKeyKey": "secretkey",
            "secretName": "mlpipeline-minio-artifact",
        }
    return json.dumps({"Provider": provider, "Params": params}, separators=(",", ":"))


def output_uri(root: str, *parts: str) -> str:
    """Joins a URI as `metadata.GenerateOutputURI` does (query string dropped)."""
    base = root.split("?")[0].rstrip("/")
    return base + "/" + "/".join(p.strip("/") for p in parts)


def order_tasks(pipeline_spec: Mapping[str, Any]) -> list[str]:
    """Orders root DAG tasks so each runs after its dependencies (ties by name).

    Raises:
      spec_lib.UnsupportedConstructError: On a dependency cycle or unknown dependency.
    """
    tasks = pipeline_spec["root"]["dag"]["tasks"]
    deps = {}
    for name, task in tasks.items():
        upstream = set(task.get("dependentTasks", []))
        for artifact in task.get("inputs", {}).get("artifacts", {}).values():
            if "taskOutputArtifact" in artifact:
                upstream.add(artifact["taskOutputArtifact"]["producerTask"])
        for parameter in task.get("inputs", {}).get("parameters", {}).values():
            if "taskOutputParameter" in parameter:
                upstream.add(parameter["taskOutputParameter"]["producerTask"])
        unknown = sorted(upstream - set(tasks))
        if unknown:
            raise spec_lib.UnsupportedConstructError(
                f"task {name}: depends on unknown tasks {unknown}"
            )
        deps[name] = upstream
    order: list[str] = []
    while len(order) < len(tasks):
        ready = sorted(n for n in tasks if n not in order and deps[n] <= set(order))
        if not ready:
            raise spec_lib.UnsupportedConstructError(
                f"dependency cycle among {sorted(set(tasks) - set(order))}"
            )
        order.append(ready[0])
    return order


def resolve_parameters(
    task_name: str,
    task: Mapping[str, Any],
    component: Mapping[str, Any],
    pipeline_parameters: Mapping[str, Any],
    producers: Mapping[str, TaskRun],
) -> dict[str, Any]:
    """Resolves a task's input parameters as `driver/resolve.go` does and checks their types.

    Only `runtimeValue.constant` is implemented for constants; `taskOutputParameter` reads the
    producer's output parameters (looked up by producer task key in `producers`).

    Raises:
      spec_lib.UnsupportedConstructError: On a parameter source the driver does not implement.
      BackendError: When a producer task cannot be found.
      ValueError: On a missing pipeline parameter or a type mismatch, naming it.
    """
    values: dict[str, Any] = {}
    for key, source in sorted(task.get("inputs", {}).get("parameters", {}).items()):
        if "runtimeValue" in source:
            if "constant" not in source["runtimeValue"]:
                raise spec_lib.UnsupportedConstructError(
                    f"task {task_name}: parameter {key}: "
                    f"runtimeValue {sorted(source['runtimeValue'])} not implemented"
                )
            values[key] = source["runtimeValue"]["constant"]
        elif "componentInputParameter" in source:
            name = source["componentInputParameter"]
            if name not in pipeline_parameters:
                raise ValueError(
                    f"task {task_name}: pipeline parameter {name!r} has no value or default"
                )
            values[key] = pipeline_parameters[name]
        elif "taskOutputParameter" in source:
            producer_key = source["taskOutputParameter"]["producerTask"]
            output_key = source["taskOutputParameter"]["outputParameterKey"]
            producer = _producer(task_name, producer_key, producers)
            if output_key not in producer.parameters:
                raise BackendError(
                    f"task {task_name}: producer {producer_key!r} has no output parameter "
                    f"{output_key!r} (has {sorted(producer.parameters)})"
                )
            values[key] = producer.parameters[output_key]
        else:
            raise spec_lib.UnsupportedConstructError(
                f"task {task_name}: parameter {key}: {sorted(source)} not implemented"
            )
    expected: dict[str, type | tuple[type, ...]] = {
        "STRING": str,
        "NUMBER_INTEGER": (int, float),
        "NUMBER_DOUBLE": (int, float),
        "BOOLEAN": bool,
        "LIST": list,
        "STRUCT": dict,
    }
    definitions = component.get("inputDefinitions", {}).get("parameters", {})
    for key, definition in definitions.items():
        if key not in values:
            # Defaults are added by the launcher (`component/launcher_v2.go` addDefaultParams).
            if "defaultValue" in definition:
                values[key] = definition["defaultValue"]
            elif not definition.get("isOptional"):
                raise ValueError(f"task {task_name}: parameter {key!r} has no value")
            continue
        kind = definition.get("parameterType")
        if kind not in expected:
            raise spec_lib.UnsupportedConstructError(
                f"task {task_name}: parameter {key} of type {kind!r}"
            )
        if kind == "STRING" and not isinstance(values[key], str):
            values[key] = json.dumps(values[key])
        if not isinstance(values[key], expected[kind]) or (
            kind != "BOOLEAN" and isinstance(values[key], bool)
        ):
            raise ValueError(f"task {task_name}: parameter {key!r} is {values[key]!r}, not {kind}")
    return values


def parameter_from_text(text: str, kind: str) -> Any:
    """Parses an output parameter file as `metadata.TextToPbValue` does (converter.go).

    Raises:
      ValueError: When the text does not parse as `kind`.
    """
    if kind == "STRING":
        return text
    if kind in ("NUMBER_INTEGER", "NUMBER_DOUBLE"):
        return float(text.strip())
    if kind == "BOOLEAN":
        lowered = text.strip()
        if lowered in ("1", "t", "T", "TRUE", "true", "True"):
            return True
        if lowered in ("0", "f", "F", "FALSE", "false", "False"):
            return False
        raise ValueError(f"not a boolean: {text!r}")
    if kind in ("LIST", "STRUCT"):
        value = json.loads(text)
        if not isinstance(value, list if kind == "LIST" else dict):
            raise ValueError(f"not a {kind}: {text!r}")
        return value
    raise ValueError(f"unknown parameter type {kind!r}")


def read_executor_output(path: str) -> dict[str, Any]:
    """Reads the ExecutorOutput file as `getExecutorOutputFile` does (`component/launcher_v2.go`).

    A missing file is an empty ExecutorOutput; anything else must parse strictly (protojson:
    unknown fields are errors).

    Raises:
      BackendError: When the file is not a valid ExecutorOutput.
    """
    if not os.path.exists(path):
        return {"artifacts": {}, "parameterValues": {}}
    with open(path) as f:
        text = f.read()
    message = pipeline_spec_pb2.ExecutorOutput()
    try:
        json_format.Parse(text, message)
    except json_format.ParseError as e:
        raise BackendError(f"failed to unmarshall ExecutorOutput in file {path!r}: {e}") from e
    parsed = json_format.MessageToDict(message)
    parsed.setdefault("artifacts", {})
    parsed.setdefault("parameterValues", {})
    return parsed


class Backend:
    """An emulated open-source KFP v2 backend with its state in one directory.

    Usage: `Backend(state_dir, version="2.14.0").run(docs, arguments={...})`. The state
    directory holds `objectstore/` (the buckets), `mlmd/metadata.sqlite` (ML-Metadata, bound
    at `/kfp-metadata` in every pod), `cache.json` (the API server's cache table) and
    `pods/<run>/<task>/` (each step's mounts while it runs).
    """

    def __init__(
        self,
        state_dir: str,
        *,
        version: str = "2.14.0",
        launcher_config: Mapping[str, str] | None = None,
        publish_logs: bool = True,
        cache_enabled: bool = True,
        step_timeout_s: float = 900,
    ):
        """Creates the backend.

        Args:
          state_dir: Directory for the object store, metadata store and pods.
          version: The release to behave like (2.5.0 to 2.17.x), see `BackendVersion`.
          launcher_config: Data of the `kfp-launcher` ConfigMap (e.g. `defaultPipelineRoot`).
          publish_logs: The driver's `--publish_logs` (manifests set it true: the default).
          cache_enabled: False is the API server started with caching disabled.
          step_timeout_s: Limit per step.
        """
        self.state_dir = os.path.abspath(state_dir)
        self.version = BackendVersion.parse(version)
        self.launcher_config = dict(launcher_config or {})
        self.publish_logs = publish_logs
        self.cache_enabled = cache_enabled
        self.step_timeout_s = step_timeout_s
        self.store = ObjectStore(os.path.join(self.state_dir, "objectstore"))
        self.metadata_path = os.path.join(self.state_dir, "mlmd", METADATA_FILE)

    def run(
        self,
        docs: spec_lib.PipelineDocs,
        *,
        arguments: Mapping[str, Any] | None = None,
        pipeline_root: str | None = None,
        run_id: str | None = None,
    ) -> RunResult:
        """Runs every task of the spec (see the module docstring).

        Args:
          docs: The compiled spec (checked first as the API server and compiler do, see
            `check_accepted`; the project's own stricter checks are `spec_lib`'s).
          arguments: Pipeline parameter values (the spec's defaults otherwise).
          pipeline_root: The run's `pipeline_root` (runtime config `gcsOutputDirectory`).
          run_id: Run id (a fresh UUID otherwise).

        Returns:
          What each task did.

        Raises:
          spec_lib.UnsupportedConstructError: Naming the first construct it cannot execute.
          BackendError: When the driver or launcher would fail (StepFailedError for a step).
        """
        check_pod_isolation()
        spec = docs.pipeline_spec
        check_accepted(spec)
        pipeline_name = spec["pipelineInfo"]["name"]
        run_id = run_id or str(uuid.uuid4())
        # `metadata/client.go` GetPipeline: the run's root is `<root>/<pipeline>/<run id>`.
        root = resolve_pipeline_root(pipeline_root, self.launcher_config)
        run_root = output_uri(root, pipeline_name, run_id)
        parameters = {
            k: v["defaultValue"]
            for k, v in spec["root"].get("inputDefinitions", {}).get("parameters", {}).items()
            if "defaultValue" in v
        }
        parameters.update(arguments or {})
        mlmd = MetadataStore(self.metadata_path)
        state = _RunState(
            mlmd=mlmd,
            cache=cache_lib.ExecutionCache(self.state_dir),
            # `driver/root_dag.go` -> `metadata/client.go` GetPipeline.
            contexts=mlmd.pipeline_run(
                pipeline_name, run_id, _NAMESPACE, run_root, store_session_info(root)
            ),
            pipeline_name=pipeline_name,
            run_id=run_id,
            run_root=run_root,
            session_info=store_session_info(root),
        )
        # Executions of this run's root DAG by the name they are recorded under.
        in_dag: dict[str, TaskRun] = {}
        runs: dict[str, TaskRun] = {}
        for key in order_tasks(spec):
            task = spec["root"]["dag"]["tasks"][key]
            started = time.monotonic()
            done = self._run_task(state, spec, key, task, parameters, in_dag)
            done.seconds = time.monotonic() - started
            in_dag[done.task_name] = done
            runs[key] = done
            logging.info("Task %s %s in %.1f s", key, done.state, done.seconds)
        return RunResult(run_id, run_root, runs)

    def _task_name(self, key: str, task: Mapping[str, Any]) -> str:
        if self.version.task_identity == "2.14+":
            return key
        display = task.get("taskInfo", {}).get("name", "")
        if not display:
            raise BackendError(f"task {key}: taskInfo.name is empty")
        return display

    def _run_task(
        self,
        state: "_RunState",
        spec: Mapping[str, Any],
        key: str,
        task: Mapping[str, Any],
        parameters: Mapping[str, Any],
        in_dag: Mapping[str, TaskRun],
    ) -> TaskRun:
        task_name = self._task_name(key, task)
        display_name = task.get("taskInfo", {}).get("name", "")
        mlmd = state.mlmd
        component = spec["components"][task["componentRef"]["name"]]
        executor = spec["deploymentSpec"]["executors"][component["executorLabel"]]
        values = resolve_parameters(key, task, component, parameters, in_dag)
        inputs = {}
        for input_key, source in sorted(task.get("inputs", {}).get("artifacts", {}).items()):
            if "taskOutputArtifact" not in source:
                raise spec_lib.UnsupportedConstructError(
                    f"task {key}: artifact {input_key}: {sorted(source)} not implemented"
                )
            producer_key = source["taskOutputArtifact"]["producerTask"]
            output_key = source["taskOutputArtifact"]["outputArtifactKey"]
            producer = _producer(key, producer_key, in_dag)
            if output_key not in producer.outputs:
                raise BackendError(f"task {key}: {producer_key} has no output {output_key!r}")
            inputs[input_key] = producer.outputs[output_key]
        if "importer" in executor:
            (output_key,) = component.get("outputDefinitions", {}).get("artifacts", {})
            return self._import(state, key, task_name, executor, values, output_key)
        if "container" not in executor:
            raise spec_lib.UnsupportedConstructError(f"task {key}: executor {sorted(executor)}")
        container = executor["container"]
        executor_input = self._executor_input(state.run_root, task_name, component, values, inputs)
        output_types = {
            k: d["parameterType"]
            for k, d in component.get("outputDefinitions", {}).get("parameters", {}).items()
        }
        fingerprint = ""
        caching = task.get("cachingOptions", {})
        if self.cache_enabled and caching.get("enableCache"):
            if caching.get("cacheKey"):
                fingerprint = cache_lib.custom_key_fingerprint(
                    task["componentRef"]["name"], caching["cacheKey"]
                )
            else:
                fingerprint = cache_lib.fingerprint(
                    cache_lib.cache_key(
                        executor_input,
                        output_types,
                        [*container.get("command", []), *container.get("args", [])],
                        container.get("image", ""),
                        _pvc_names(spec, component["executorLabel"]),
                    )
                )
            cached = state.cache.lookup(fingerprint, "pipeline/" + state.pipeline_name, _NAMESPACE)
        else:
            cached = None
        # `driver/container.go`: the execution is created (RUNNING, INPUT events keyed by input
        # name, `metadata.GenerateExecutionConfig`) before the cache decides.
        execution_id = mlmd.create_execution(
            state.contexts,
            execution_type=CONTAINER_EXECUTION_TYPE,
            task_name=task_name,
            display_name=display_name,
            input_artifacts={k: [int(a["name"])] for k, a in inputs.items()},
            input_parameters=values,
            container={
                "pod_name": f"{state.run_id}-{key}".lower(),
                "pod_uid": str(uuid.uuid4()),
                "namespace": _NAMESPACE,
                "image": container.get("image", ""),
                "cached_execution_id": str(cached) if cached is not None else "",
                "cache_fingerprint": fingerprint,
            },
        )
        if cached is not None:
            return self._reuse(state, key, task_name, executor_input, execution_id, cached)
        try:
            artifacts, out_params = self._launch(
                key, state.run_id, container, component, executor_input
            )
        except BackendError:
            # `component/launcher_v2.go` Execute: the execution is published FAILED.
            mlmd.publish_execution(state.contexts, execution_id, "FAILED", None, {})
            raise
        # `component/launcher_v2.go` uploadOutputArtifacts -> `metadata/client.go` RecordArtifact.
        output_ids = {
            k: mlmd.record_artifact(
                k, a["uri"], spec_lib.artifact_title(a["type"]), a["metadata"], state.session_info
            )
            for k, a in artifacts.items()
        }
        mlmd.publish_execution(state.contexts, execution_id, "COMPLETE", out_params, output_ids)
        if fingerprint:
            # `driver/cache.go` createCache: the API server's table, not MLMD.
            state.cache.add(
                fingerprint, "pipeline/" + state.pipeline_name, _NAMESPACE, execution_id
            )
        return _task_run(mlmd, key, task_name, "COMPLETE", execution_id, fingerprint)

    def _executor_input(
        self,
        run_root: str,
        task_name: str,
        component: Mapping[str, Any],
        values: Mapping[str, Any],
        inputs: Mapping[str, dict[str, Any]],
    ) -> dict[str, Any]:
        """The ExecutorInput the driver builds (`driver/driver.go` provisionOutputs)."""
        definitions = dict(component.get("outputDefinitions", {}).get("artifacts", {}))
        if self.publish_logs:
            definitions[EXECUTOR_LOGS_KEY] = {"artifactType": {"schemaTitle": "system.Artifact"}}
        task_root = output_uri(run_root, task_name, str(uuid.uuid4()))
        outputs: dict[str, Any] = {"artifacts": {}}
        for output_key, definition in sorted(definitions.items()):
            artifact = {
                "uri": output_uri(task_root, output_key),
                "type": definition["artifactType"],
            }
            if self.version.output_file_in_task_root:
                artifact["name"] = output_key  # Added with Pythonic artifacts (2.15).
            if definition.get("metadata"):
                artifact["metadata"] = dict(definition["metadata"])
            outputs["artifacts"][output_key] = {"artifacts": [artifact]}
        output_parameters = component.get("outputDefinitions", {}).get("parameters", {})
        if output_parameters:
            outputs["parameters"] = {
                k: {"outputFile": f"{OUTPUT_PARAMETER_DIR}/{k}"} for k in sorted(output_parameters)
            }
        local_root = local_path_for_uri(task_root)
        if self.version.output_file_in_task_root and local_root is not None:
            outputs["outputFile"] = os.path.join(local_root, "output_metadata.json")
        else:
            outputs["outputFile"] = LEGACY_OUTPUT_FILE
        executor_input: dict[str, Any] = {"inputs": {}, "outputs": outputs}
        if values:
            executor_input["inputs"]["parameterValues"] = dict(values)
        if inputs:
            executor_input["inputs"]["artifacts"] = {
                k: {"artifacts": [dict(v)]} for k, v in sorted(inputs.items())
            }
        return executor_input

    def _reuse(
        self,
        state: "_RunState",
        key: str,
        task_name: str,
        executor_input: Mapping[str, Any],
        execution_id: int,
        cached_id: int,
    ) -> TaskRun:
        """A cache hit (`driver/cache.go` reuseCachedOutputs): the earlier outputs, no pod.

        The new execution is published CACHED with the cached output parameters and OUTPUT
        events to the cached artifacts (`driver/container.go`, `metadata/client.go`).
        """
        mlmd = state.mlmd
        cached = mlmd.execution(cached_id)
        outputs = {}
        for output_key in executor_input["outputs"].get("artifacts", {}):
            if output_key not in cached["outputs"]:
                raise BackendError(
                    f"task {key}: unable to find artifact with name {output_key} in mlmd "
                    f"output artifacts of cached execution {cached_id}"
                )
            outputs[output_key] = cached["outputs"][output_key]
        mlmd.publish_execution(
            state.contexts, execution_id, "CACHED", cached["parameters"], outputs
        )
        logging.info("Task %s: cache hit, reusing execution %d", key, cached_id)
        fingerprint = mlmd.execution(execution_id)["fingerprint"]
        return _task_run(mlmd, key, task_name, "CACHED", execution_id, fingerprint)

    def _import(
        self,
        state: "_RunState",
        key: str,
        task_name: str,
        executor: Mapping[str, Any],
        values: Mapping[str, Any],
        output_key: str,
    ) -> TaskRun:
        """An importer task (`driver/driver.go`, launcher importer mode): records the URI."""
        importer = executor["importer"]
        uri_source = importer.get("artifactUri", {})
        if "constant" in uri_source:
            uri = uri_source["constant"]
        elif "runtimeParameter" in uri_source:
            uri = values[uri_source["runtimeParameter"]]
        else:
            raise spec_lib.UnsupportedConstructError(
                f"task {key}: importer artifactUri {sorted(uri_source)}"
            )
        mlmd = state.mlmd
        # `component/importer_launcher.go`: an ImporterExecution, the artifact, one OUTPUT event.
        execution_id = mlmd.create_execution(
            state.contexts,
            execution_type=IMPORTER_EXECUTION_TYPE,
            task_name=task_name,
            display_name="",
            input_artifacts={},
            input_parameters={},
        )
        artifact_id = mlmd.record_artifact(
            output_key,
            uri,
            spec_lib.artifact_title(importer["typeSchema"]),
            importer.get("metadata", {}),
            state.session_info,
        )
        mlmd.publish_execution(
            state.contexts, execution_id, "COMPLETE", None, {output_key: artifact_id}
        )
        return _task_run(mlmd, key, task_name, "COMPLETE", execution_id, "")

    def _launch(
        self,
        key: str,
        run_id: str,
        container: Mapping[str, Any],
        component: Mapping[str, Any],
        executor_input: dict[str, Any],
    ) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
        """The launcher (`component/launcher_v2.go`): download, run, collect, upload.

        Returns:
          Output key -> RuntimeArtifact after merging the ExecutorOutput, and the output
          parameter values.
        """
        pod = _Pod(
            os.path.join(self.state_dir, "pods", run_id, key), os.path.dirname(self.metadata_path)
        )
        for input_key, artifact_list in executor_input["inputs"].get("artifacts", {}).items():
            for artifact in artifact_list["artifacts"]:
                local = local_path_for_uri(artifact["uri"])
                if local is None:
                    logging.warning(
                        "Task %s: input %s at %s has no recognized storage URI: not downloaded",
                        key,
                        input_key,
                        artifact["uri"],
                    )
                    continue
                self.store.download(artifact["uri"], pod.host_path(local))
        # prepareOutputFolders: the parent of every output's local path, and of parameter files.
        outputs = executor_input["outputs"]
        for parameter in outputs.get("parameters", {}).values():
            os.makedirs(os.path.dirname(pod.host_path(parameter["outputFile"])), exist_ok=True)
        for artifact_list in outputs["artifacts"].values():
            local = local_path_for_uri(artifact_list["artifacts"][0]["uri"])
            if local is not None:
                os.makedirs(os.path.dirname(pod.host_path(local)), exist_ok=True)
        os.makedirs(os.path.dirname(pod.host_path(outputs["outputFile"])), exist_ok=True)
        argv = [
            _fill(key, a, _placeholders(executor_input))
            for a in [*container.get("command", []), *container.get("args", [])]
        ]
        if argv and argv[0] == "python":
            argv[0] = sys.executable  # The image's interpreter is this environment's.
        env = dict(os.environ, **{e["name"]: e["value"] for e in container.get("env", [])})
        log_path = pod.log_path(outputs["artifacts"].get(EXECUTOR_LOGS_KEY))
        returncode = pod.run(argv, env, log_path, self.step_timeout_s, key)
        artifacts = {k: dict(v["artifacts"][0]) for k, v in outputs["artifacts"].items()}
        if returncode != 0:
            # On failure only the executor-logs artifact is uploaded (uploadOutputArtifacts).
            if EXECUTOR_LOGS_KEY in artifacts:
                self._upload(pod, key, EXECUTOR_LOGS_KEY, artifacts[EXECUTOR_LOGS_KEY])
            with open(log_path, errors="replace") as f:
                tail = f.read()[-4000:]
            raise StepFailedError(f"task {key} exited {returncode}; log {log_path}:\n{tail}")
        executor_output = read_executor_output(pod.host_path(outputs["outputFile"]))
        parameters = _collect_output_parameters(key, pod, component, outputs, executor_output)
        for output_key, artifact in artifacts.items():
            produced = executor_output["artifacts"].get(output_key, {}).get("artifacts", [])
            # mergeRuntimeArtifacts; executor-logs stays launcher-managed.
            if produced and output_key != EXECUTOR_LOGS_KEY:
                if produced[0].get("uri"):
                    artifact["uri"] = produced[0]["uri"]
                artifact["metadata"] = {
                    **artifact.get("metadata", {}),
                    **produced[0].get("metadata", {}),
                }
            artifact.setdefault("metadata", {})
        uploaded = {}
        for output_key, artifact in artifacts.items():
            if self._upload(pod, key, output_key, artifact) or output_key != EXECUTOR_LOGS_KEY:
                uploaded[output_key] = artifact
        pod.remove()
        return uploaded, parameters

    def _upload(self, pod: "_Pod", key: str, output_key: str, artifact: Mapping[str, Any]) -> bool:
        """Uploads one output; False when its local path does not exist (a warning only)."""
        local = local_path_for_uri(artifact["uri"])
        if local is None:
            logging.warning(
                "Task %s: output %s URI %s has no recognized storage scheme: not uploaded",
                key,
                output_key,
                artifact["uri"],
            )
            return True
        try:
            self.store.upload(pod.host_path(local), artifact["uri"])
        except FileNotFoundError:
            # "We allow components to not produce output files" (launcher_v2.go).
            logging.warning(
                "Task %s: output %s: local path %s does not exist", key, output_key, local
            )
            return False
        return True


@dataclasses.dataclass(frozen=True)
class _RunState:
    """What every task of one run records into: the stores and the run's MLMD contexts."""

    mlmd: MetadataStore
    cache: cache_lib.ExecutionCache
    contexts: PipelineRun
    pipeline_name: str
    run_id: str
    run_root: str
    session_info: str


class _Pod:
    """A step's per-task folders, bound over the pod paths inside its own mount namespace."""

    def __init__(self, root: str, metadata_dir: str):
        shutil.rmtree(root, ignore_errors=True)
        self.root = root
        self.binds = {
            mount: os.path.join(root, mount.strip("/").replace("/", "_")) for mount in POD_MOUNTS
        }
        for source in self.binds.values():
            os.makedirs(source)
        # Shared by every pod, not per task: the store steps read lineage from.
        self.shared_binds = {METADATA_MOUNT: metadata_dir}

    def host_path(self, pod_path: str) -> str:
        """Where a path inside the pod lives on this machine.

        Raises:
          BackendError: For a path outside the pod's mounts.
        """
        for mount, source in self.binds.items():
            if pod_path == mount or pod_path.startswith(mount + "/"):
                return source + pod_path[len(mount) :]
        raise BackendError(f"pod path {pod_path!r} is outside the pod mounts {POD_MOUNTS}")

    def log_path(self, logs_artifact: Mapping[str, Any] | None) -> str:
        """The launcher tees the step's output into the executor-logs artifact's local path."""
        if logs_artifact:
            local = local_path_for_uri(logs_artifact["artifacts"][0]["uri"])
            if local is not None:
                return self.host_path(local)
        return os.path.join(self.root + ".log")

    def run(
        self, argv: list[str], env: Mapping[str, str], log_path: str, timeout_s: float, key: str
    ) -> int:
        """Runs `argv` under `unshare -m` with the pod's folders bound; returns the exit code."""
        binds = " && ".join(
            f"mount --bind {shlex.quote(source)} {shlex.quote(mount)}"
            for mount, source in {**self.binds, **self.shared_binds}.items()
        )
        command = [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "--",
            "/bin/sh",
            "-c",
            f'{binds} && exec "$@"',
            "kfp-pod",
            *argv,
        ]
        with open(log_path, "w") as log:
            try:
                result = subprocess.run(
                    command,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=dict(env),
                    timeout=timeout_s,
                    check=False,
                )
            except subprocess.TimeoutExpired as e:
                raise StepFailedError(f"task {key} ran over {timeout_s} s; log: {log_path}") from e
        return result.returncode

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def _producer(task: str, producer_key: str, in_dag: Mapping[str, TaskRun]) -> TaskRun:
    # Producers are looked up by task key among the DAG's executions, which are named by
    # task name (`driver/resolve.go` resolveUpstreamArtifacts, `metadata/client.go`).
    if producer_key not in in_dag:
        raise BackendError(
            f"task {task}: cannot find producer task {producer_key!r} "
            f"(executions in this DAG: {sorted(in_dag)})"
        )
    return in_dag[producer_key]


def _task_run(
    mlmd: MetadataStore, key: str, task_name: str, state: str, execution_id: int, fingerprint: str
) -> TaskRun:
    execution = mlmd.execution(execution_id)
    return TaskRun(
        name=key,
        task_name=task_name,
        state=state,
        execution_id=execution_id,
        fingerprint=fingerprint,
        outputs={k: mlmd.artifact(i) for k, i in execution["outputs"].items()},
        output_titles={k: mlmd.artifact_title(i) for k, i in execution["outputs"].items()},
        parameters=dict(execution["parameters"]),
        seconds=0.0,
    )


def _pvc_names(spec_docs_pipeline: Mapping[str, Any], executor_label: str) -> list[str]:
    # PVC names come from the platform spec; the emulator runs without one (none mounted).
    del spec_docs_pipeline, executor_label
    return []


def _collect_output_parameters(
    key: str,
    pod: _Pod,
    component: Mapping[str, Any],
    outputs: Mapping[str, Any],
    executor_output: Mapping[str, Any],
) -> dict[str, Any]:
    """`collectOutputParameters` (`component/launcher_v2.go`): ExecutorOutput first, then files."""
    values = dict(executor_output.get("parameterValues", {}))
    definitions = component.get("outputDefinitions", {}).get("parameters", {})
    for name, parameter in outputs.get("parameters", {}).items():
        if name in values:
            continue
        kind = definitions[name]["parameterType"]
        path = pod.host_path(parameter["outputFile"])
        try:
            with open(path) as f:
                values[name] = parameter_from_text(f.read(), kind)
        except (OSError, ValueError) as e:
            raise BackendError(
                f"task {key}: failed to read output parameter name={name!r} type={kind!r} "
                f"path={parameter['outputFile']!r}: {e}"
            ) from e
    return values


def _placeholders(executor_input: Mapping[str, Any]) -> dict[str, str]:
    """The placeholders the launcher fills (`component/launcher_v2.go` getPlaceholders)."""
    placeholders = {"{{$}}": json.dumps(executor_input, sort_keys=True)}
    inputs = executor_input.get("inputs", {})
    outputs = executor_input.get("outputs", {})
    for kind, artifacts in (
        ("inputs", inputs.get("artifacts", {})),
        ("outputs", outputs.get("artifacts", {})),
    ):
        for key, artifact_list in artifacts.items():
            artifact = artifact_list["artifacts"][0]
            placeholders[f"{{{{$.{kind}.artifacts['{key}'].uri}}}}"] = artifact["uri"]
            local = local_path_for_uri(artifact["uri"])
            if local is not None:
                placeholders[f"{{{{$.{kind}.artifacts['{key}'].path}}}}"] = local
    for key, value in inputs.get("parameterValues", {}).items():
        placeholders[f"{{{{$.inputs.parameters['{key}']}}}}"] = (
            value if isinstance(value, str) else json.dumps(value)
        )
    for key, parameter in outputs.get("parameters", {}).items():
        placeholders[f"{{{{$.outputs.parameters['{key}'].output_file}}}}"] = parameter["outputFile"]
    placeholders["{{$.outputs.output_file}}"] = outputs["outputFile"]
    return placeholders


def _fill(task: str, text: str, placeholders: Mapping[str, str]) -> str:
    if text in placeholders:
        return placeholders[text]
    for key, value in placeholders.items():
        if key != "{{$}}":
            text = text.replace(key, value)
    left = _PLACEHOLDER_RE.findall(text)
    if left:
        raise spec_lib.UnsupportedConstructError(f"task {task}: unresolvable placeholders {left}")
    return text
