"""Plain functions over a compiled KFP v2 spec: patch, check, add the Kubernetes section, render.

Patches of the PipelineSpec work on the typed protos (`kfp.pipeline_spec.pipeline_spec_pb2`,
the messages KFP's API server parses the spec into); the Kubernetes platform section stays a
dict because its message (`kfp-kubernetes`) cannot be installed beside protobuf 3.20.
"""

import copy
import dataclasses
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import yaml
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2

# TFX's file-based ExampleGen driver: Vertex AI runs it as a preCacheCheck hook.
TFX_EXAMPLE_GEN_DRIVER = "tfx.orchestration.kubeflow.v2.file_based_example_gen.driver"
CONTAINER_COMMAND = ("python", "-m", "runners.kubeflow.pod.container")
FINGERPRINT_COMMAND = ("python", "-m", "runners.kubeflow.pod.fingerprint")
# Every container runs one of the project's entry points, in the project's image.
PROJECT_COMMANDS = (CONTAINER_COMMAND, FINGERPRINT_COMMAND)
INPUTS_SPEC_FLAG = "--json_serialized_inputs_spec_args"
# The KFP UI renders `system.*` artifacts by `schemaTitle`, as the KFP SDK writes them.
UI_SCHEMA_VERSION = "0.0.1"
EXAMPLE_GEN_DRIVER_FLAG = "--example_gen_driver"
# Executor kinds the open-source KFP v2 backend runs (it answers "resolver not implemented
# yet" for resolvers; customJob is Vertex AI only).
SUPPORTED_EXECUTOR_KINDS = ("container", "importer")
SUPPORTED_PARAMETER_SOURCES = ("runtimeValue", "componentInputParameter", "taskOutputParameter")
SUPPORTED_CONTAINER_FIELDS = ("image", "command", "args", "resources", "env")
PLATFORM = "kubernetes"


class UnsupportedConstructError(ValueError):
    """The spec holds something open-source KFP v2 cannot execute; the message names it."""


class InvalidSpecError(ValueError):
    """The spec does not parse strictly into KFP's protos; the message says where."""


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


@dataclasses.dataclass
class TypedSpec:
    """A PipelineSpec as KFP's protos, with its deployment section parsed too.

    `PipelineSpec.deployment_spec` is a `Struct` in the proto; its content is a
    `PipelineDeploymentConfig`, kept here typed and written back by `to_dict`.

    Attributes:
      spec: The PipelineSpec.
      deployment: Its executors.
    """

    spec: pipeline_spec_pb2.PipelineSpec
    deployment: pipeline_spec_pb2.PipelineDeploymentConfig


def _parse_strictly(what: str, value: Mapping[str, Any], message: Any) -> Any:
    try:
        return json_format.ParseDict(value, message, ignore_unknown_fields=False)
    except json_format.ParseError as e:
        raise InvalidSpecError(f"{what} does not parse as {type(message).__name__}: {e}") from e


def to_typed(pipeline_spec: Mapping[str, Any]) -> TypedSpec:
    """Parses a PipelineSpec dict strictly (unknown fields and wrong types are errors).

    Raises:
      InvalidSpecError: Naming the field that does not parse.
    """
    spec = _parse_strictly("PipelineSpec", pipeline_spec, pipeline_spec_pb2.PipelineSpec())
    deployment = _parse_strictly(
        "deploymentSpec",
        pipeline_spec.get("deploymentSpec", {}),
        pipeline_spec_pb2.PipelineDeploymentConfig(),
    )
    return TypedSpec(spec, deployment)


def to_dict(typed: TypedSpec) -> dict[str, Any]:
    """Renders a TypedSpec as the JSON-like dict KFP's YAML holds (camelCase names)."""
    spec = copy.deepcopy(typed.spec)
    spec.deployment_spec.Clear()
    spec.deployment_spec.update(json_format.MessageToDict(typed.deployment))
    return json_format.MessageToDict(spec)


def check_strictly(docs: PipelineDocs) -> None:
    """Re-parses both documents strictly, as KFP's API server does before accepting a run.

    The PipelineSpec and its deployment section are checked field by field; the platform
    section down to each executor's config (a `Struct` in `PlatformSpec`; the
    `KubernetesExecutorConfig` fields themselves are checked by `make validate-platform`).

    Raises:
      InvalidSpecError: Naming what does not parse.
    """
    to_typed(docs.pipeline_spec)
    if docs.platform_spec:
        _parse_strictly("platform spec", docs.platform_spec, pipeline_spec_pb2.PlatformSpec())


def keep_task_identity(spec: pipeline_spec_pb2.PipelineSpec) -> None:
    """Sets every root task's `taskInfo.name` to its DAG key.

    KFP backends up to 2.13 record executions under `taskInfo.name` but look producers up by
    the DAG key (`driver/driver.go`, `resolveUpstreamArtifacts` / `metadata/client.go`
    `TaskName`), so a display name there breaks every downstream input; from 2.14 the key is
    passed separately (`--task_name`, `argocompiler/container.go`) and `taskInfo.name` is only
    the display name. Equal values work on both.
    """
    for name, task in spec.root.dag.tasks.items():
        task.task_info.name = name


def describe_pipeline(
    spec: pipeline_spec_pb2.PipelineSpec, display_name: str, step_titles: Mapping[str, str]
) -> str:
    """Sets the pipeline's display name, and a description naming each step for people.

    Step titles cannot go into `taskInfo.name` (see `keep_task_identity`); the description is
    what the KFP UI shows on the pipeline's page (and `submit` sends it with an upload).

    Args:
      spec: Spec to change in place.
      display_name: Pipeline display name.
      step_titles: Task key -> what the step does.

    Returns:
      The description written.

    Raises:
      KeyError: If `step_titles` names a task the spec does not have.
    """
    tasks = spec.root.dag.tasks
    unknown = sorted(set(step_titles) - set(tasks))
    if unknown:
        raise KeyError(f"titles given for tasks {unknown} not in the spec ({sorted(tasks)})")
    spec.pipeline_info.display_name = display_name
    spec.pipeline_info.description = "Steps: " + "; ".join(
        f"{name}: {step_titles[name]}" for name in step_titles
    )
    return spec.pipeline_info.description


def set_parameter_defaults(
    spec: pipeline_spec_pb2.PipelineSpec,
    defaults: Mapping[str, str],
    descriptions: Mapping[str, str],
) -> None:
    """Gives STRING pipeline parameters default values and descriptions (TFX emits neither).

    Without a default, KFP refuses a run that does not pass the parameter.

    Raises:
      KeyError: If a name is not a pipeline parameter of the spec.
    """
    parameters = spec.root.input_definitions.parameters
    for name in sorted(set(defaults) | set(descriptions)):
        if name not in parameters:
            raise KeyError(
                f"{name!r} is not a pipeline parameter; the spec has {sorted(parameters)}"
            )
        if name in defaults:
            parameters[name].default_value.string_value = defaults[name]
        if name in descriptions:
            parameters[name].description = descriptions[name]


def add_parameter_task(
    typed: TypedSpec,
    *,
    task: str,
    image: str,
    command: Sequence[str],
    args: Sequence[str],
    inputs: Mapping[str, str],
    output: str,
) -> None:
    """Adds a plain container task taking pipeline parameters and producing one STRING output.

    Args:
      typed: Spec to change in place.
      task: Task key (also the component name, `taskInfo.name` and `<task>_executor` label).
      image: Container image.
      command: Container command.
      args: Container args (KFP placeholders such as `{{$.inputs.parameters['x']}}`).
      inputs: Component input parameter -> pipeline parameter feeding it.
      output: Name of the STRING output parameter.

    Raises:
      KeyError: If the task exists, or an input names no pipeline parameter.
    """
    spec = typed.spec
    if task in spec.root.dag.tasks or task in spec.components:
        raise KeyError(f"task {task!r} is already in the spec")
    root_parameters = spec.root.input_definitions.parameters
    missing = sorted(set(inputs.values()) - set(root_parameters))
    if missing:
        raise KeyError(f"pipeline parameters {missing} not in the spec ({sorted(root_parameters)})")
    label = f"{task}_executor"
    component = spec.components[task]
    component.executor_label = label
    for name, source in inputs.items():
        component.input_definitions.parameters[name].parameter_type = root_parameters[
            source
        ].parameter_type
    component.output_definitions.parameters[
        output
    ].parameter_type = pipeline_spec_pb2.ParameterType.STRING
    container = typed.deployment.executors[label].container
    container.image = image
    container.command.extend(command)
    container.args.extend(args)
    task_spec = spec.root.dag.tasks[task]
    task_spec.task_info.name = task
    task_spec.component_ref.name = task
    for name, source in inputs.items():
        task_spec.inputs.parameters[name].component_input_parameter = source


def wire_parameter_from_task(
    spec: pipeline_spec_pb2.PipelineSpec, *, parameter: str, producer: str, output: str
) -> list[str]:
    """Feeds every task input that reads pipeline parameter `parameter` from a task's output.

    The pipeline parameter is then removed: a parameter that no task reads would only mislead.

    Args:
      spec: Spec to change in place.
      parameter: Pipeline parameter to replace.
      producer: Task producing the value.
      output: Its output parameter key.

    Returns:
      The tasks rewired.

    Raises:
      KeyError: If the parameter or the producer is missing, or no task reads the parameter.
    """
    tasks = spec.root.dag.tasks
    if parameter not in spec.root.input_definitions.parameters:
        raise KeyError(f"{parameter!r} is not a pipeline parameter of the spec")
    if producer not in tasks:
        raise KeyError(f"producer task {producer!r} is not in the spec ({sorted(tasks)})")
    rewired = []
    for name in sorted(tasks):
        task = tasks[name]
        for value in task.inputs.parameters.values():
            if value.WhichOneof("kind") == "component_input_parameter" and (
                value.component_input_parameter == parameter
            ):
                value.task_output_parameter.producer_task = producer
                value.task_output_parameter.output_parameter_key = output
                if producer not in task.dependent_tasks:
                    task.dependent_tasks.append(producer)
                    task.dependent_tasks.sort()
                rewired.append(name)
    if not rewired:
        raise KeyError(f"no task reads pipeline parameter {parameter!r}")
    del spec.root.input_definitions.parameters[parameter]
    return rewired


def set_caching(
    spec: pipeline_spec_pb2.PipelineSpec, tasks: Iterable[str], *, enabled: bool
) -> None:
    """Sets `cachingOptions.enableCache` of the named tasks.

    Raises:
      KeyError: If a task is not in the spec.
    """
    for name in tasks:
        if name not in spec.root.dag.tasks:
            raise KeyError(f"task {name!r} is not in the spec ({sorted(spec.root.dag.tasks)})")
        spec.root.dag.tasks[name].caching_options.enable_cache = enabled


def retitle_artifact_types(
    typed: TypedSpec, types_by_title: Mapping[str, pipeline_spec_pb2.ArtifactTypeSchema]
) -> list[str]:
    """Replaces artifact types by title in every component, and in the executors' copies.

    TFX's executors rebuild input artifacts from the inputs spec in their args
    (`--json_serialized_inputs_spec_args`), so that copy is regenerated from the patched
    component, in the form TFX writes it (`step_builder.py`).

    Args:
      typed: Spec to change in place.
      types_by_title: Title TFX compiled -> the artifact type to write instead.

    Returns:
      `component.section.key` of each artifact changed.
    """
    changed = []
    for name, component in sorted(typed.spec.components.items()):
        touched = False
        for section, definitions in (
            ("inputDefinitions", component.input_definitions),
            ("outputDefinitions", component.output_definitions),
        ):
            for key, artifact in sorted(definitions.artifacts.items()):
                title = artifact_title(json_format.MessageToDict(artifact.artifact_type))
                if title in types_by_title:
                    artifact.artifact_type.CopyFrom(types_by_title[title])
                    changed.append(f"{name}.{section}.{key}")
                    touched = True
        executor = typed.deployment.executors.get(component.executor_label)
        if touched and executor is not None and INPUTS_SPEC_FLAG in executor.container.args:
            index = list(executor.container.args).index(INPUTS_SPEC_FLAG) + 1
            executor.container.args[index] = json_format.MessageToJson(
                component.input_definitions, sort_keys=True
            )
    return changed


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


def find_unsupported_constructs(docs: PipelineDocs, always_run: Iterable[str] = ()) -> list[str]:
    """Lists every construct of the spec that open-source KFP v2 (or this image) cannot run.

    Checked: executor kinds (resolver, customJob), container lifecycle hooks and unknown
    container fields, the legacy schema 2.0 parameter forms (`constantValue`, `type`,
    `runtimeParameter` values), task trigger conditions and iterators, exit-handler DAGs,
    artifact types the container cannot rehydrate (or the UI cannot render), tasks whose
    command is not a project entry point, tasks reading external state that KFP could serve
    from its cache, and unknown platforms.

    Args:
      docs: The compiled spec.
      always_run: Tasks that read external state and so must have caching off.

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
            if tuple(container.get("command", ())) not in PROJECT_COMMANDS:
                problems.append(
                    f"executor {label}: command {container.get('command')!r} is not a "
                    f"project entry point {[list(c) for c in PROJECT_COMMANDS]}"
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
                problem = _artifact_type_problem(
                    artifact.get("artifactType", {}), compiler_utils.TITLE_TO_CLASS_PATH
                )
                if problem:
                    problems.append(f"component {name}: {section}.artifacts.{key} {problem}")
    tasks = spec.get("root", {}).get("dag", {}).get("tasks", {})
    for name in sorted(always_run):
        # Proto3 JSON omits `enableCache: false`, so a missing value means "off".
        if tasks.get(name, {}).get("cachingOptions", {}).get("enableCache", False):
            problems.append(
                f"task {name}: reads external state but cachingOptions.enableCache is true "
                "(KFP's cache key covers parameters, not data or served models)"
            )
    for name, task in sorted(tasks.items()):
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


def check_supported(docs: PipelineDocs, always_run: Iterable[str] = ()) -> None:
    """Raises if the spec holds anything open-source KFP v2 cannot run.

    Raises:
      UnsupportedConstructError: Listing every problem found.
    """
    problems = find_unsupported_constructs(docs, always_run)
    if problems:
        raise UnsupportedConstructError(
            "The spec holds constructs open-source KFP v2 cannot run:\n  " + "\n  ".join(problems)
        )


def _artifact_type_problem(
    artifact_type: Mapping[str, Any], tfx_titles: Mapping[str, str]
) -> str | None:
    """Why the step's container could not rebuild this artifact type, or None if it can.

    It can rebuild TFX's own types (`tfx.*` titles), the project's UI types by their `system.*`
    `schemaTitle` (the entrypoint maps them back), and any other type whose title is the
    importable class path of a TFX Artifact (TFX's entrypoint imports it).
    """
    from tfx.types import artifact
    from tfx.utils import import_utils

    from components.ui_artifacts import CLASS_PATH_BY_TITLE

    title = _artifact_title(artifact_type)
    if title in tfx_titles:
        return None
    if title in CLASS_PATH_BY_TITLE:
        if artifact_type.get("schemaTitle") != title:
            return f"type {title!r} as an instance schema (the KFP UI needs schemaTitle)"
        return None
    try:
        cls = import_utils.import_class_by_path(title)
    except (ImportError, AttributeError, ValueError):
        return f"type {title!r} (not a TFX type nor an importable class path)"
    if not (isinstance(cls, type) and issubclass(cls, artifact.Artifact)):
        return f"type {title!r} (not a TFX Artifact class)"
    return None


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
    # TFDV's StatsOptions JSON lists its unset (null) options, and which exist depends on the TFDV
    # release (1.21 dropped `_slice_sqls`): an absent option and a null one load the same.
    for task in spec.get("root", {}).get("dag", {}).get("tasks", {}).values():
        parameters = task.get("inputs", {}).get("parameters", {})
        stats = parameters.get("stats_options_json", {}).get("runtimeValue", {})
        if isinstance(stats.get("constant"), str):
            options = json.loads(stats["constant"])
            stats["constant"] = json.dumps({k: v for k, v in options.items() if v is not None})
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
