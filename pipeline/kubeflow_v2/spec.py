"""Plain functions over a compiled KFP v2 spec: patch, check, add the Kubernetes section, render."""

import copy
import dataclasses
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import yaml

# TFX's file-based ExampleGen driver: Vertex AI runs it as a preCacheCheck hook.
TFX_EXAMPLE_GEN_DRIVER = "tfx.orchestration.kubeflow.v2.file_based_example_gen.driver"
CONTAINER_COMMAND = ("python", "-m", "pipeline.kubeflow_v2.container")
EXAMPLE_GEN_DRIVER_FLAG = "--example_gen_driver"
# Executor kinds the open-source KFP v2 backend runs (it answers "resolver not implemented
# yet" for resolvers; customJob is Vertex AI only).
SUPPORTED_EXECUTOR_KINDS = ("container", "importer")
SUPPORTED_PARAMETER_SOURCES = ("runtimeValue", "componentInputParameter", "taskOutputParameter")
SUPPORTED_CONTAINER_FIELDS = ("image", "command", "args", "resources", "env")
PLATFORM = "kubernetes"


class UnsupportedConstructError(ValueError):
    """The spec holds something open-source KFP v2 cannot execute; the message names it."""


@dataclasses.dataclass(frozen=True)
class PipelineDocs:
    """A compiled pipeline as KFP stores it: the PipelineSpec and its PlatformSpec.

    Attributes:
      pipeline_spec: PipelineSpec as JSON-like dict.
      platform_spec: PlatformSpec as JSON-like dict (`{"platforms": {...}}`), may be empty.
    """

    pipeline_spec: dict[str, Any]
    platform_spec: dict[str, Any]


def iter_executors(pipeline_spec: Mapping[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yields (executor label, executor spec) in label order."""
    executors = pipeline_spec.get("deploymentSpec", {}).get("executors", {})
    for label in sorted(executors):
        yield label, executors[label]


def executor_label_of(pipeline_spec: Mapping[str, Any], task_name: str) -> str:
    """Returns the executor label of a root DAG task.

    Raises:
      KeyError: If the task or its component is not in the spec.
    """
    task = pipeline_spec["root"]["dag"]["tasks"][task_name]
    return pipeline_spec["components"][task["componentRef"]["name"]]["executorLabel"]


def replace_example_gen_hook(pipeline_spec: dict[str, Any]) -> list[str]:
    """Drops the ExampleGen `preCacheCheck` hook and lets the step's own command run the driver.

    Open-source KFP does not read `lifecycle`; the container entrypoint runs TFX's Kubeflow v2
    ExampleGen driver itself when given `--example_gen_driver`.

    Args:
      pipeline_spec: Spec to change in place.

    Returns:
      Labels of the executors changed.

    Raises:
      UnsupportedConstructError: On a lifecycle hook that is not TFX's ExampleGen driver.
    """
    changed = []
    for label, executor in iter_executors(pipeline_spec):
        container = executor.get("container", {})
        hook = container.get("lifecycle")
        if hook is None:
            continue
        command = hook.get("preCacheCheck", {}).get("command", [])
        if TFX_EXAMPLE_GEN_DRIVER not in command or set(hook) != {"preCacheCheck"}:
            raise UnsupportedConstructError(
                f"executor {label}: lifecycle hook {hook!r} is not TFX's ExampleGen driver; "
                "open-source KFP v2 does not run lifecycle hooks"
            )
        del container["lifecycle"]
        container["args"] = [EXAMPLE_GEN_DRIVER_FLAG, *container.get("args", [])]
        changed.append(label)
    return changed


def set_display_names(
    pipeline_spec: dict[str, Any], display_name: str, task_names: Mapping[str, str]
) -> None:
    """Sets the pipeline's and each task's name shown in the KFP UI.

    The DAG keys (and so artifact paths and caching keys) stay the TFX node ids; KFP shows
    `taskInfo.name`, as the KFP SDK's `set_display_name` does.

    Args:
      pipeline_spec: Spec to change in place.
      display_name: Pipeline display name.
      task_names: TFX node id -> display name; tasks not listed keep their id.

    Raises:
      KeyError: If `task_names` names a task the spec does not have.
    """
    pipeline_spec["pipelineInfo"]["displayName"] = display_name
    tasks = pipeline_spec["root"]["dag"]["tasks"]
    unknown = sorted(set(task_names) - set(tasks))
    if unknown:
        raise KeyError(f"display names given for tasks {unknown} not in the spec ({sorted(tasks)})")
    for name, task in tasks.items():
        task["taskInfo"]["name"] = task_names.get(name, name)


def set_parameter_defaults(
    pipeline_spec: dict[str, Any], defaults: Mapping[str, Any], descriptions: Mapping[str, str]
) -> None:
    """Gives pipeline parameters default values and descriptions (TFX emits neither).

    Without a default, KFP refuses a run that does not pass the parameter.

    Args:
      pipeline_spec: Spec to change in place.
      defaults: Parameter name -> default value.
      descriptions: Parameter name -> description.

    Raises:
      KeyError: If a name is not a pipeline parameter of the spec.
    """
    parameters = pipeline_spec["root"].get("inputDefinitions", {}).get("parameters", {})
    for name in sorted(set(defaults) | set(descriptions)):
        if name not in parameters:
            raise KeyError(
                f"{name!r} is not a pipeline parameter; the spec has {sorted(parameters)}"
            )
        if name in defaults:
            parameters[name]["defaultValue"] = defaults[name]
        if name in descriptions:
            parameters[name]["description"] = descriptions[name]


def build_kubernetes_platform(
    pipeline_spec: Mapping[str, Any],
    *,
    default_node_selector: Mapping[str, str],
    task_node_selectors: Mapping[str, Mapping[str, str]],
    task_tolerations: Mapping[str, Sequence[Mapping[str, str]]],
    pvc_mounts: Sequence[tuple[str, str]],
) -> dict[str, Any]:
    """Builds the PlatformSpec with a `KubernetesExecutorConfig` per container executor.

    Args:
      pipeline_spec: Compiled spec (read only).
      default_node_selector: Node labels for tasks not in `task_node_selectors` (CPU pool).
      task_node_selectors: Task name -> node labels (e.g. the Trainer -> GPU pool).
      task_tolerations: Task name -> tolerations (key, operator, value, effect).
      pvc_mounts: (claim name, mount path) mounted into every container executor.

    Returns:
      `{"platforms": {"kubernetes": {"deploymentSpec": {"executors": {label: config}}}}}`.

    Raises:
      KeyError: If a task named in the mappings is not in the spec.
    """
    tasks = pipeline_spec["root"]["dag"]["tasks"]
    unknown = sorted((set(task_node_selectors) | set(task_tolerations)) - set(tasks))
    if unknown:
        raise KeyError(f"placement given for tasks {unknown} not in the spec ({sorted(tasks)})")
    executors: dict[str, Any] = {}
    for name in sorted(tasks):
        label = executor_label_of(pipeline_spec, name)
        if "container" not in pipeline_spec["deploymentSpec"]["executors"][label]:
            continue
        config: dict[str, Any] = {}
        selector = task_node_selectors.get(name, default_node_selector)
        if selector:
            config["nodeSelector"] = {"labels": dict(sorted(selector.items()))}
        tolerations = task_tolerations.get(name, ())
        if tolerations:
            config["tolerations"] = [dict(t) for t in tolerations]
        if pvc_mounts:
            config["pvcMount"] = [
                {"constant": claim, "mountPath": path} for claim, path in pvc_mounts
            ]
        if config:
            executors[label] = config
    if not executors:
        return {}
    return {"platforms": {PLATFORM: {"deploymentSpec": {"executors": executors}}}}


def find_unsupported_constructs(docs: PipelineDocs) -> list[str]:
    """Lists every construct of the spec that open-source KFP v2 (or this image) cannot run.

    Checked: executor kinds (resolver, customJob), container lifecycle hooks and unknown
    container fields, the legacy schema 2.0 parameter forms (`constantValue`, `type`,
    `runtimeParameter` values), task trigger conditions and iterators, exit-handler DAGs,
    artifact types TFX's container cannot rehydrate, tasks whose executor is not the project
    entrypoint, and unknown platforms.

    Args:
      docs: The compiled spec.

    Returns:
      One line per problem (`where: what`), empty when the spec is fully supported.
    """
    # Imported here: compiler_utils pulls in TFX.
    from tfx.orchestration.kubeflow.v2 import compiler_utils

    spec = docs.pipeline_spec
    problems = []
    if spec.get("schemaVersion") != "2.1.0":
        problems.append(f"schemaVersion: {spec.get('schemaVersion')!r} (need 2.1.0 value forms)")
    for label, executor in iter_executors(spec):
        kinds = sorted(executor)
        for kind in kinds:
            if kind not in SUPPORTED_EXECUTOR_KINDS:
                problems.append(
                    f"executor {label}: {kind} executor (not implemented by open-source KFP v2)"
                )
        container = executor.get("container")
        if container is not None:
            for field in sorted(container):
                if field not in SUPPORTED_CONTAINER_FIELDS:
                    problems.append(
                        f"executor {label}: container.{field} (ignored by open-source KFP v2)"
                    )
            if tuple(container.get("command", ())) != CONTAINER_COMMAND:
                problems.append(
                    f"executor {label}: command {container.get('command')!r} is not the "
                    f"project entrypoint {list(CONTAINER_COMMAND)}"
                )
    for name, component in sorted(spec.get("components", {}).items()):
        if "dag" in component:
            problems.append(f"component {name}: nested DAG (TFX emits it only for exit handlers)")
        for section in ("inputDefinitions", "outputDefinitions"):
            definitions = component.get(section, {})
            for key, parameter in sorted(definitions.get("parameters", {}).items()):
                if "type" in parameter:
                    problems.append(
                        f"component {name}: {section}.parameters.{key}.type (legacy form)"
                    )
            for key, artifact in sorted(definitions.get("artifacts", {}).items()):
                title = _artifact_title(artifact.get("artifactType", {}))
                if title not in compiler_utils.TITLE_TO_CLASS_PATH:
                    problems.append(
                        f"component {name}: {section}.artifacts.{key} type {title!r} "
                        "(TFX's container cannot rehydrate it)"
                    )
    for name, task in sorted(spec.get("root", {}).get("dag", {}).get("tasks", {}).items()):
        for field in ("triggerPolicy", "iteratorPolicy", "parameterIterator", "artifactIterator"):
            if field in task:
                problems.append(f"task {name}: {field}")
        for key, parameter in sorted(task.get("inputs", {}).get("parameters", {}).items()):
            source = next(iter(parameter), None)
            if source not in SUPPORTED_PARAMETER_SOURCES:
                problems.append(f"task {name}: input parameter {key} from {source}")
            elif source == "runtimeValue" and "constant" not in parameter["runtimeValue"]:
                problems.append(
                    f"task {name}: input parameter {key} "
                    f"runtimeValue {sorted(parameter['runtimeValue'])} "
                    "(only `constant` is implemented)"
                )
    for key, parameter in sorted(
        spec.get("root", {}).get("inputDefinitions", {}).get("parameters", {}).items()
    ):
        if "type" in parameter:
            problems.append(f"root: inputDefinitions.parameters.{key}.type (legacy form)")
    for platform in sorted(docs.platform_spec.get("platforms", {})):
        if platform != PLATFORM:
            problems.append(
                f"platform {platform!r} (only {PLATFORM!r} is understood by open-source KFP)"
            )
    return problems


def check_supported(docs: PipelineDocs) -> None:
    """Raises if the spec holds anything open-source KFP v2 cannot run.

    Raises:
      UnsupportedConstructError: Listing every problem found.
    """
    problems = find_unsupported_constructs(docs)
    if problems:
        raise UnsupportedConstructError(
            "The spec holds constructs open-source KFP v2 cannot run:\n  " + "\n  ".join(problems)
        )


def _artifact_title(artifact_type: Mapping[str, Any]) -> str:
    if "schemaTitle" in artifact_type:
        return str(artifact_type["schemaTitle"])
    schema = yaml.safe_load(artifact_type.get("instanceSchema", "")) or {}
    return str(schema.get("title", ""))


def artifact_title(artifact_type: Mapping[str, Any]) -> str:
    """Returns the schema title of an ArtifactTypeSchema dict (`schemaTitle` or instance schema)."""
    return _artifact_title(artifact_type)


def render(docs: PipelineDocs) -> str:
    """Renders the spec as KFP's compiler does: YAML, PipelineSpec then PlatformSpec document.

    Keys are sorted and no timestamp is written, so equal specs render byte-identically.
    """
    documents = [docs.pipeline_spec] + ([docs.platform_spec] if docs.platform_spec else [])
    return yaml.safe_dump_all(documents, sort_keys=True, default_flow_style=False, width=100)


def parse(text: str) -> PipelineDocs:
    """Parses a rendered spec (one or two YAML documents).

    Raises:
      ValueError: If the text does not hold a PipelineSpec first and at most one more document.
    """
    documents = [d for d in yaml.safe_load_all(text) if d is not None]
    if not documents or not isinstance(documents[0], dict) or "root" not in documents[0]:
        raise ValueError("not a KFP pipeline spec: the first YAML document has no `root`")
    if len(documents) > 2:
        raise ValueError(
            f"expected a PipelineSpec and at most a PlatformSpec, got {len(documents)} documents"
        )
    return PipelineDocs(documents[0], documents[1] if len(documents) == 2 else {})


def normalise(docs: PipelineDocs) -> PipelineDocs:
    """Returns a copy with volatile fields (SDK version, images) replaced by fixed markers."""
    spec = copy.deepcopy(docs.pipeline_spec)
    spec["sdkVersion"] = "<sdk-version>"
    for _, executor in iter_executors(spec):
        if "container" in executor:
            executor["container"]["image"] = "<image>"
    return PipelineDocs(spec, copy.deepcopy(docs.platform_spec))


def diff(expected: Any, actual: Any, path: str = "") -> list[str]:
    """Lists differences both ways: keys only in one side and values that differ.

    Args:
      expected: E.g. the golden spec.
      actual: E.g. the freshly compiled spec.
      path: Prefix for the reported paths.

    Returns:
      Lines such as `missing: a.b`, `unexpected: a.c`, `changed: a.d: 1 != 2`.
    """
    if isinstance(expected, dict) and isinstance(actual, dict):
        lines = []
        for key in sorted(set(expected) | set(actual), key=str):
            sub = f"{path}.{key}" if path else str(key)
            if key not in actual:
                lines.append(f"missing: {sub}")
            elif key not in expected:
                lines.append(f"unexpected: {sub}")
            else:
                lines.extend(diff(expected[key], actual[key], sub))
        return lines
    if isinstance(expected, list) and isinstance(actual, list) and len(expected) == len(actual):
        lines = []
        for i, (e, a) in enumerate(zip(expected, actual, strict=True)):
            lines.extend(diff(e, a, f"{path}[{i}]"))
        return lines
    return [] if expected == actual else [f"changed: {path}: {expected!r} != {actual!r}"]
