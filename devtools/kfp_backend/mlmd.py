"""ML-Metadata as KFP's v2 driver and launcher record it, in a real SQLite MLMD store.

Contexts, executions, artifacts and events follow kubeflow/pipelines
`backend/src/v2/metadata/client.go` (type names, custom property keys, event paths); metadata
goes in and out through KFP's converter (`backend/src/v2/metadata/converter.go`).
"""

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from google.protobuf import json_format
from ml_metadata.proto import metadata_store_pb2

from metadata import store as mlmd

# client.go: context and execution type names.
PIPELINE_CONTEXT_TYPE = "system.Pipeline"
PIPELINE_RUN_CONTEXT_TYPE = "system.PipelineRun"
CONTAINER_EXECUTION_TYPE = "system.ContainerExecution"
IMPORTER_EXECUTION_TYPE = "system.ImporterExecution"


class MetadataConversionError(ValueError):
    """A metadata value MLMD cannot store (converter.go: null and other kinds)."""


def to_mlmd_value(key: str, value: Any) -> dict[str, Any]:
    """Converts one metadata value as `StructValueToMLMDValue` does (converter.go).

    Strings stay strings; numbers become doubles; booleans become ints (1/0); lists and
    structs are wrapped in a one-key struct (`list`/`struct`); null is an error.

    Raises:
      MetadataConversionError: For null (or anything not JSON), naming the key.
    """
    if isinstance(value, str):
        return {"string_value": value}
    if isinstance(value, bool):  # Before numbers: bool is an int in Python.
        return {"int_value": int(value)}
    if isinstance(value, int | float):
        return {"double_value": float(value)}
    if isinstance(value, list):
        return {"struct_value": {"list": value}}
    if isinstance(value, dict):
        return {"struct_value": {"struct": value}}
    raise MetadataConversionError(
        f"metadata {key!r}: unknown/unsupported value type {type(value).__name__} ({value!r})"
    )


def from_mlmd_value(value: Mapping[str, Any]) -> Any:
    """Converts an MLMD value back to metadata as `toRuntimeArtifact` does (converter.go).

    Every number (double or int) comes back as a float; structs come back as stored (so a list
    arrives as `{"list": [...]}`).
    """
    if "string_value" in value:
        return value["string_value"]
    if "double_value" in value:
        return float(value["double_value"])
    if "int_value" in value:
        return float(value["int_value"])
    return value["struct_value"]


@dataclasses.dataclass(frozen=True)
class PipelineRun:
    """The pipeline context and the run context every execution of a run is put in."""

    pipeline: metadata_store_pb2.Context
    run: metadata_store_pb2.Context


class MetadataStore:
    """A real ML-Metadata store (SQLite under the state directory) written as KFP's driver writes.

    What goes in follows kubeflow/pipelines `backend/src/v2/metadata/client.go`:
    `pipeline_run` is `GetPipeline` (contexts), `create_execution` is `CreateExecution` (INPUT
    events), `record_artifact` is `RecordArtifact`, `publish_execution` is `PublishExecution`
    (OUTPUT events). Steps read it through `lineage_graph` exactly as they would KFP's store.
    """

    def __init__(self, path: str, *, readonly: bool = False):
        """Opens (or creates) the SQLite store at `path`."""
        self.path = path
        self.store = mlmd.open_store(mlmd.sqlite_config(path, writable=not readonly))
        self._type_ids: dict[tuple[str, str], int] = {}

    def _type_id(self, kind: str, name: str) -> int:
        # getOrInsert{Context,Execution,Artifact}Type (client.go): types are named, no properties.
        if (kind, name) not in self._type_ids:
            if kind == "context":
                type_id = self.store.put_context_type(metadata_store_pb2.ContextType(name=name))
            elif kind == "execution":
                type_id = self.store.put_execution_type(metadata_store_pb2.ExecutionType(name=name))
            else:
                type_id = self.store.put_artifact_type(metadata_store_pb2.ArtifactType(name=name))
            self._type_ids[(kind, name)] = type_id
        return self._type_ids[(kind, name)]

    def _context(
        self, type_name: str, name: str, properties: Mapping[str, str]
    ) -> metadata_store_pb2.Context:
        # client.go getOrInsertContext: an existing context is reused as it is.
        found = self.store.get_context_by_type_and_name(type_name, name)
        if found is not None:
            return found
        context = metadata_store_pb2.Context(type_id=self._type_id("context", type_name), name=name)
        for key, value in properties.items():
            context.custom_properties[key].string_value = value
        (context.id,) = self.store.put_contexts([context])
        return context

    def pipeline_run(
        self, pipeline_name: str, run_id: str, namespace: str, run_root: str, session_info: str
    ) -> PipelineRun:
        """The pipeline and run contexts, the run's a child of the pipeline's (`GetPipeline`)."""
        pipeline = self._context(PIPELINE_CONTEXT_TYPE, pipeline_name, {})
        run = self._context(
            PIPELINE_RUN_CONTEXT_TYPE,
            run_id,
            {
                "namespace": namespace,
                "resource_name": f"run-resource-{run_id}",
                "pipeline_root": run_root,
                "store_session_info": session_info,
            },
        )
        parents = self.store.get_parent_contexts_by_context(run.id)
        if not parents:
            self.store.put_parent_contexts(
                [metadata_store_pb2.ParentContext(child_id=run.id, parent_id=pipeline.id)]
            )
        elif [p.id for p in parents] != [pipeline.id]:
            raise ValueError(
                f"run context {run_id!r} has parent contexts {[p.id for p in parents]}, "
                f"expected pipeline context {pipeline.id}"
            )
        return PipelineRun(pipeline, run)

    def create_execution(
        self,
        run: PipelineRun,
        *,
        execution_type: str,
        task_name: str,
        display_name: str,
        input_artifacts: Mapping[str, Sequence[int]],
        input_parameters: Mapping[str, Any],
        container: Mapping[str, str] | None = None,
    ) -> int:
        """Records a RUNNING execution with an INPUT event per input artifact (`CreateExecution`).

        Args:
          run: The contexts the execution goes in.
          execution_type: `system.ContainerExecution` or `system.ImporterExecution`.
          task_name: Custom property `task_name` (what producers are looked up by).
          display_name: Custom property `display_name` (`taskInfo.name`).
          input_artifacts: Input key -> MLMD artifact ids (the inputs' RuntimeArtifact names).
          input_parameters: Custom property `inputs` (a struct).
          container: For container executions: `pod_name`, `pod_uid`, `namespace`, `image`,
            and when set `cache_fingerprint`, `cached_execution_id` (string properties).

        Returns:
          The execution id.
        """
        execution = metadata_store_pb2.Execution(
            type_id=self._type_id("execution", execution_type),
            last_known_state=metadata_store_pb2.Execution.RUNNING,
        )
        execution.custom_properties["display_name"].string_value = display_name
        execution.custom_properties["task_name"].string_value = task_name
        for key, value in (container or {}).items():
            if value:  # client.go sets the cache properties only when non-empty.
                execution.custom_properties[key].string_value = value
        if input_parameters:
            execution.custom_properties["inputs"].struct_value.update(dict(input_parameters))
        pairs = []
        for key, ids in sorted(input_artifacts.items()):
            for artifact in self.store.get_artifacts_by_id(list(ids)):
                pairs.append((artifact, _event(metadata_store_pb2.Event.INPUT, key)))
        execution_id, _, _ = self.store.put_execution(execution, pairs, [run.pipeline, run.run])
        return int(execution_id)

    def record_artifact(
        self,
        output_name: str,
        uri: str,
        title: str,
        metadata: Mapping[str, Any],
        session_info: str,
    ) -> int:
        """Stores an output artifact as `RecordArtifact` does (client.go); returns its id.

        Its type is named by the schema title (`SchemaToArtifactType`), its metadata become
        custom properties through the converter, plus `display_name` (the output name) and
        `store_session_info` unless the metadata has them; state LIVE.

        Raises:
          MetadataConversionError: For metadata MLMD cannot hold.
        """
        properties = {k: to_mlmd_value(k, v) for k, v in metadata.items()}
        properties.setdefault("display_name", {"string_value": output_name})
        properties.setdefault("store_session_info", {"string_value": session_info})
        artifact = metadata_store_pb2.Artifact(
            type_id=self._type_id("artifact", title),
            uri=uri,
            state=metadata_store_pb2.Artifact.LIVE,
        )
        for key, value in properties.items():
            json_format.ParseDict(value, artifact.custom_properties[key])
        (artifact_id,) = self.store.put_artifacts([artifact])
        return int(artifact_id)

    def publish_execution(
        self,
        run: PipelineRun,
        execution_id: int,
        state: str,
        output_parameters: Mapping[str, Any] | None,
        output_artifacts: Mapping[str, int],
    ) -> None:
        """Sets the final state, `outputs` and an OUTPUT event per output (`PublishExecution`).

        Raises:
          ValueError: For a state other than COMPLETE, CACHED or FAILED.
        """
        if state not in ("COMPLETE", "CACHED", "FAILED"):
            raise ValueError(f"execution state must be COMPLETE, CACHED or FAILED, got {state!r}")
        (execution,) = self.store.get_executions_by_id([execution_id])
        execution.last_known_state = metadata_store_pb2.Execution.State.Value(state)
        # An empty map would leave a Value with no kind set, which MLMD refuses (it aborts).
        if output_parameters:
            execution.custom_properties["outputs"].struct_value.update(dict(output_parameters))
        by_id = {a.id: a for a in self.store.get_artifacts_by_id(list(output_artifacts.values()))}
        pairs = [
            (by_id[artifact_id], _event(metadata_store_pb2.Event.OUTPUT, key))
            for key, artifact_id in sorted(output_artifacts.items())
        ]
        self.store.put_execution(execution, pairs, [run.pipeline, run.run])

    def artifact(self, artifact_id: int) -> dict[str, Any]:
        """Returns the RuntimeArtifact JSON the driver rebuilds from MLMD (`toRuntimeArtifact`).

        Its name is the MLMD id, its type has an empty schema (the driver does not keep it),
        every custom property becomes metadata.
        """
        (stored,) = self.store.get_artifacts_by_id([artifact_id])
        return {
            "name": str(artifact_id),
            "uri": stored.uri,
            "type": {"instanceSchema": ""},
            "metadata": {
                k: from_mlmd_value(json_format.MessageToDict(v, preserving_proto_field_name=True))
                for k, v in stored.custom_properties.items()
            },
        }

    def artifact_title(self, artifact_id: int) -> str:
        """Returns the schema title the launcher recorded as the artifact's MLMD type."""
        (stored,) = self.store.get_artifacts_by_id([artifact_id])
        (artifact_type,) = self.store.get_artifact_types_by_id([stored.type_id])
        return str(artifact_type.name)

    def execution(self, execution_id: int) -> dict[str, Any]:
        """An execution's state, task name, fingerprint, output parameters and outputs by key.

        Outputs come from its OUTPUT events' path keys (`GetOutputArtifactsByExecutionId`);
        output parameters from its `outputs` custom property.
        """
        (stored,) = self.store.get_executions_by_id([execution_id])
        properties = stored.custom_properties
        outputs = {
            event.path.steps[0].key: event.artifact_id
            for event in self.store.get_events_by_execution_ids([execution_id])
            if event.type == metadata_store_pb2.Event.OUTPUT
        }
        parameters = (
            json_format.MessageToDict(properties["outputs"].struct_value)
            if "outputs" in properties
            else {}
        )
        return {
            "state": metadata_store_pb2.Execution.State.Name(stored.last_known_state),
            "task_name": properties["task_name"].string_value,
            "fingerprint": properties["cache_fingerprint"].string_value
            if "cache_fingerprint" in properties
            else "",
            "outputs": outputs,
            "parameters": parameters,
        }


def _event(kind: int, key: str) -> metadata_store_pb2.Event:
    # client.go eventPath: one step keyed by the input/output name.
    event = metadata_store_pb2.Event(type=kind)  # type: ignore[arg-type]
    event.path.steps.add().key = key
    return event
