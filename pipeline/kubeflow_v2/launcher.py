"""Runs a compiled KFP v2 spec on this machine step by step, as KFP's v2 driver and launcher do.

For each root DAG task in dependency order: resolve its input parameters (constants, pipeline
parameters, upstream outputs) and artifacts (upstream outputs as recorded after their run),
provision output URIs `<pipeline_root>/<run_id>/<task>/<output>`, then either import (importer)
or, for a container: give the step a fresh "pod" directory, download input artifacts from the
object store into the launcher's local paths (`/gcs`, `/s3`, `/minio` under the pod root), fill
the placeholders of the command and args (`{{$}}` = the ExecutorInput), run them as a subprocess
of this environment (`python` = this interpreter), read the ExecutorOutput, merge it into the
output artifacts and upload them. The object store is a local directory. Anything else fails
with the construct's name.
"""

import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping
from typing import Any

from absl import logging

from pipeline.kubeflow_v2 import spec as spec_lib
from pipeline.kubeflow_v2.container import MOUNT_ROOT_ENV, local_path_for_uri

OUTPUT_FILE = "tmp/kfp_outputs/output_metadata.json"
_PLACEHOLDER_RE = re.compile(r"\{\{\$[^}]*\}\}")


class StepFailedError(RuntimeError):
    """A step's command exited non-zero; the message names the task and has the log tail."""


@dataclasses.dataclass
class TaskRun:
    """What one task did.

    Attributes:
      name: DAG task key.
      outputs: Output key -> RuntimeArtifact dict as downstream tasks receive it.
      parameters: Output parameter values.
      seconds: Wall time.
    """

    name: str
    outputs: dict[str, dict[str, Any]]
    parameters: dict[str, Any]
    seconds: float


@dataclasses.dataclass
class RunResult:
    """A local run of a spec.

    Attributes:
      run_id: Run id used in output URIs.
      tasks: Task key -> TaskRun, in execution order.
    """

    run_id: str
    tasks: dict[str, TaskRun]


class ObjectStore:
    """A directory standing in for the buckets behind `gs://`, `s3://` and `minio://` URIs."""

    def __init__(self, root: str):
        """Creates the store.

        Args:
          root: Directory holding `<scheme>/<bucket>/<key>`.
        """
        self.root = root

    def path(self, uri: str) -> str:
        """Returns the store path of a URI.

        Raises:
          ValueError: For a URI without an object-store scheme.
        """
        local = local_path_for_uri(uri, self.root)
        if local is None:
            raise ValueError(f"not an object-store URI (gs://, s3://, minio://): {uri!r}")
        return local

    def download(self, uri: str, local_path: str) -> None:
        """Copies an object (file or prefix) to a local path, as the launcher does."""
        if not _copy_tree_or_file(self.path(uri), local_path):
            raise FileNotFoundError(f"object store has nothing at {uri!r}")

    def upload(self, local_path: str, uri: str) -> bool:
        """Copies a local file or directory to a URI; False (as the launcher warns) if absent."""
        return _copy_tree_or_file(local_path, self.path(uri))


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
    runs: Mapping[str, TaskRun],
) -> dict[str, Any]:
    """Resolves a task's input parameter values and checks them against the component's types.

    Raises:
      spec_lib.UnsupportedConstructError: On a parameter source the driver does not implement.
      ValueError: On a missing pipeline parameter or a type mismatch, naming it.
    """
    values: dict[str, Any] = {}
    for key, source in sorted(task.get("inputs", {}).get("parameters", {}).items()):
        if "runtimeValue" in source:
            if "constant" not in source["runtimeValue"]:
                raise spec_lib.UnsupportedConstructError(
                    f"task {task_name}: parameter {key}: "
                    f"runtimeValue {sorted(source['runtimeValue'])}"
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
            producer = source["taskOutputParameter"]
            values[key] = runs[producer["producerTask"]].parameters[producer["outputParameterKey"]]
        else:
            raise spec_lib.UnsupportedConstructError(
                f"task {task_name}: parameter {key}: {sorted(source)}"
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


def run_spec(
    docs: spec_lib.PipelineDocs,
    work_dir: str,
    *,
    arguments: Mapping[str, Any] | None = None,
    pipeline_root: str | None = None,
    run_id: str = "local-run",
    step_timeout_s: float = 900,
) -> RunResult:
    """Runs every task of the spec locally (see the module docstring).

    Args:
      docs: The compiled spec (checked first with `find_unsupported_constructs`).
      work_dir: Holds `objectstore/` (the buckets), `pods/<task>/` and `logs/<task>.log`.
      arguments: Pipeline parameter values (defaults from the spec otherwise).
      pipeline_root: Overrides the spec's `defaultPipelineRoot`; must be gs/s3/minio.
      run_id: Run id placed in output URIs.
      step_timeout_s: Limit per step.

    Returns:
      What each task produced.

    Raises:
      spec_lib.UnsupportedConstructError: Naming the first construct it cannot execute.
      StepFailedError: When a step fails, with its log tail.
    """
    spec_lib.check_supported(docs)
    spec = docs.pipeline_spec
    root = (pipeline_root or spec.get("defaultPipelineRoot", "")).rstrip("/")
    store = ObjectStore(os.path.join(work_dir, "objectstore"))
    store.path(root)  # Fails on a root the launcher cannot use.
    parameters = {
        k: v["defaultValue"]
        for k, v in spec["root"].get("inputDefinitions", {}).get("parameters", {}).items()
        if "defaultValue" in v
    }
    parameters.update(arguments or {})
    runs: dict[str, TaskRun] = {}
    for name in order_tasks(spec):
        started = time.monotonic()
        task = spec["root"]["dag"]["tasks"][name]
        component = spec["components"][task["componentRef"]["name"]]
        executor = spec["deploymentSpec"]["executors"][component["executorLabel"]]
        values = resolve_parameters(name, task, component, parameters, runs)
        inputs = {}
        for key, source in sorted(task.get("inputs", {}).get("artifacts", {}).items()):
            if "taskOutputArtifact" not in source:
                raise spec_lib.UnsupportedConstructError(
                    f"task {name}: artifact {key}: {sorted(source)}"
                )
            producer = source["taskOutputArtifact"]
            inputs[key] = runs[producer["producerTask"]].outputs[producer["outputArtifactKey"]]
        outputs = {
            key: {
                "name": "",
                "type": definition["artifactType"],
                "uri": f"{root}/{run_id}/{name}/{key}",
                "metadata": dict(definition.get("metadata", {})),
            }
            for key, definition in sorted(
                component.get("outputDefinitions", {}).get("artifacts", {}).items()
            )
        }
        logging.info("Task %s (%s)", name, task["taskInfo"]["name"])
        out_params: dict[str, Any] = {}
        if "importer" in executor:
            task_outputs = _import(name, executor["importer"], values, outputs)
        elif "container" in executor:
            task_outputs, out_params = _run_container(
                name,
                executor["container"],
                values,
                inputs,
                outputs,
                store,
                work_dir,
                step_timeout_s,
            )
        else:
            raise spec_lib.UnsupportedConstructError(f"task {name}: executor {sorted(executor)}")
        for key, artifact in task_outputs.items():
            artifact["name"] = f"{run_id}/{name}/{key}"
            artifact["type"] = {"schemaTitle": spec_lib.artifact_title(artifact["type"])}
        runs[name] = TaskRun(name, task_outputs, out_params, time.monotonic() - started)
        logging.info("Task %s done in %.1f s", name, runs[name].seconds)
    return RunResult(run_id, runs)


def _import(
    name: str, importer: Mapping[str, Any], values: Mapping[str, Any], outputs: dict[str, dict]
) -> dict[str, dict[str, Any]]:
    uri_source = importer.get("artifactUri", {})
    if "constant" in uri_source:
        uri = uri_source["constant"]
    elif "runtimeParameter" in uri_source:
        uri = values[uri_source["runtimeParameter"]]
    else:
        raise spec_lib.UnsupportedConstructError(
            f"task {name}: importer artifactUri {sorted(uri_source)}"
        )
    (key,) = outputs
    return {
        key: {
            "uri": uri,
            "type": importer["typeSchema"],
            "metadata": dict(importer.get("metadata", {})),
        }
    }


def _run_container(
    name: str,
    container: Mapping[str, Any],
    values: Mapping[str, Any],
    inputs: Mapping[str, dict[str, Any]],
    outputs: dict[str, dict[str, Any]],
    store: ObjectStore,
    work_dir: str,
    timeout_s: float,
) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    pod = os.path.join(work_dir, "pods", name)
    shutil.rmtree(pod, ignore_errors=True)
    os.makedirs(pod)
    for key, artifact in inputs.items():
        local = local_path_for_uri(artifact["uri"], pod)
        if local is not None:
            store.download(artifact["uri"], local)
        else:
            logging.warning("Task %s: input %s at %s is not downloaded", name, key, artifact["uri"])
    for artifact in outputs.values():
        os.makedirs(os.path.dirname(local_path_for_uri(artifact["uri"], pod) or pod), exist_ok=True)
    output_file = os.path.join(pod, OUTPUT_FILE)
    os.makedirs(os.path.dirname(output_file))
    executor_input = {
        "inputs": {
            "parameterValues": dict(values),
            "artifacts": {k: {"artifacts": [v]} for k, v in inputs.items()},
        },
        "outputs": {
            "artifacts": {k: {"artifacts": [v]} for k, v in outputs.items()},
            "outputFile": output_file,
        },
    }
    placeholders = {"{{$}}": json.dumps(executor_input, sort_keys=True)}
    for key, artifact in [*inputs.items(), *outputs.items()]:
        kind = "inputs" if key in inputs else "outputs"
        placeholders[f"{{{{$.{kind}.artifacts['{key}'].uri}}}}"] = artifact["uri"]
        local = local_path_for_uri(artifact["uri"], pod)
        if local is not None:
            placeholders[f"{{{{$.{kind}.artifacts['{key}'].path}}}}"] = local
    for key, value in values.items():
        placeholders[f"{{{{$.inputs.parameters['{key}']}}}}"] = (
            value if isinstance(value, str) else json.dumps(value)
        )
    argv = [
        _fill(name, a, placeholders)
        for a in [*container.get("command", []), *container.get("args", [])]
    ]
    if argv and argv[0] == "python":
        argv[0] = sys.executable
    env = dict(os.environ, **{e["name"]: e["value"] for e in container.get("env", [])})
    env[MOUNT_ROOT_ENV] = pod
    log_path = os.path.join(work_dir, "logs", f"{name}.log")
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    with open(log_path, "w") as log:
        try:
            result = subprocess.run(
                argv, stdout=log, stderr=subprocess.STDOUT, env=env, timeout=timeout_s, check=False
            )
        except subprocess.TimeoutExpired as e:
            raise StepFailedError(f"task {name} ran over {timeout_s} s; log: {log_path}") from e
    if result.returncode != 0:
        with open(log_path) as f:
            tail = f.read()[-4000:]
        raise StepFailedError(f"task {name} exited {result.returncode}; log {log_path}:\n{tail}")
    executor_output: dict[str, Any] = {}
    if os.path.exists(output_file):
        with open(output_file) as f:
            executor_output = json.load(f)
    for key, artifact in outputs.items():
        produced = executor_output.get("artifacts", {}).get(key, {}).get("artifacts", [])
        if produced:
            if produced[0].get("uri"):
                artifact["uri"] = produced[0]["uri"]
            artifact["metadata"].update(produced[0].get("metadata", {}))
        local = local_path_for_uri(artifact["uri"], pod)
        if local is None:
            logging.warning("Task %s: output %s at %s is not uploaded", name, key, artifact["uri"])
        elif not store.upload(local, artifact["uri"]):
            logging.warning("Task %s: output %s: local path %s does not exist", name, key, local)
    shutil.rmtree(pod, ignore_errors=True)
    return outputs, dict(executor_output.get("parameterValues", {}))


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


def _copy_tree_or_file(source: str, destination: str) -> bool:
    """Copies a directory tree or a single file; False when `source` does not exist."""
    if os.path.isdir(source):
        shutil.copytree(source, destination, dirs_exist_ok=True)
    elif os.path.isfile(source):
        os.makedirs(os.path.dirname(destination), exist_ok=True)
        shutil.copy2(source, destination)
    else:
        return False
    return True
