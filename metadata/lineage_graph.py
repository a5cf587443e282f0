"""Walks ML-Metadata from a pushed model back to the data it learned from (no TFX Resolver).

Open-source KFP cannot run TFX's Resolver, so the DriftGate (and `operations/lineage.py`) follow
MLMD events themselves: model -(OUTPUT)- Trainer execution -(INPUT `examples`)- transformed
examples -(OUTPUT)- Transform execution -(INPUT `examples`)- raw Examples -(INPUT)-
StatisticsGen execution -(OUTPUT `statistics`)- statistics of the same Examples. Only events
and their keys are used (the component input/output keys), never TFX's node contexts, so the
walk reads the same on a BeamDagRunner store and on KFP's, whose launcher records an event per
task input and output keyed by its name (kubeflow/pipelines
`backend/src/v2/metadata/client.go`: `eventPath`, used by `CreateExecution` for INPUT events
and `PublishExecution` for OUTPUT events).
"""

import dataclasses
import json
from collections.abc import Iterable, Mapping
from typing import Any

from google.protobuf import json_format
from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2

from metadata.store import MetadataConfig, StoreNotFoundError, open_store

_OUTPUT_EVENTS = (metadata_store_pb2.Event.OUTPUT, metadata_store_pb2.Event.DECLARED_OUTPUT)
_INPUT_EVENTS = (metadata_store_pb2.Event.INPUT, metadata_store_pb2.Event.DECLARED_INPUT)
# Where KFP's launcher mounts each object store in a step's container
# (kubeflow/pipelines backend/src/v2/objectstore/object_store.go): a step sees `/gcs/b/x` for
# `gs://b/x`, and MLMD records the object-store URI.
_MOUNTS = {"/gcs/": "gs://", "/s3/": "s3://", "/minio/": "minio://"}


class LineageError(LookupError):
    """The chain from a pushed model to its data cannot be followed; the message says where."""


def encode_connection(config: MetadataConfig | None) -> str:
    """Serialises an MLMD connection for an exec property ("" when there is none).

    Args:
      config: A direct connection (local SQLite) or a gRPC client config (KFP's
        metadata-grpc-service), or None.

    Returns:
      JSON naming the message type, e.g. `{"client_config": {"host": ..., "port": 8080}}`.
    """
    if config is None:
        return ""
    key = (
        "client_config"
        if isinstance(config, metadata_store_pb2.MetadataStoreClientConfig)
        else "connection_config"
    )
    return json.dumps({key: json_format.MessageToDict(config)}, sort_keys=True)


def connect(encoded: str) -> metadata_store.MetadataStore:
    """Opens the store named by `encode_connection`'s output (read-only for SQLite).

    Raises:
      LineageError: If no connection is configured, the value is not one, or the SQLite file
        does not exist.
    """
    if not encoded:
        raise LineageError("no ML-Metadata connection is configured for this step")
    try:
        value = json.loads(encoded)
    except json.JSONDecodeError as e:
        raise LineageError(f"ML-Metadata connection is not JSON: {encoded!r}") from e
    config: MetadataConfig
    if "connection_config" in value:
        config = json_format.ParseDict(
            value["connection_config"], metadata_store_pb2.ConnectionConfig()
        )
        if config.HasField("sqlite"):
            config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
    elif "client_config" in value:
        config = json_format.ParseDict(
            value["client_config"], metadata_store_pb2.MetadataStoreClientConfig()
        )
    else:
        raise LineageError(f"ML-Metadata connection names neither config kind: {encoded!r}")
    try:
        return open_store(config)
    except StoreNotFoundError as e:
        raise LineageError(str(e)) from e


def node_id(store: metadata_store.MetadataStore, execution_id: int) -> str | None:
    """The pipeline node an execution ran (its TFX `node` context, `<pipeline>.<node>`), or None."""
    for context in store.get_contexts_by_execution(execution_id):
        if context.type == "node":
            return context.name.split(".", 1)[-1]
    return None


def _events(store: metadata_store.MetadataStore, artifact_id: int) -> list[Any]:
    return list(store.get_events_by_artifact_ids([artifact_id]))


def producer(store: metadata_store.MetadataStore, artifact_id: int) -> int | None:
    """The id of the (newest) execution that output the artifact, or None."""
    ids = [e.execution_id for e in _events(store, artifact_id) if e.type in _OUTPUT_EVENTS]
    return max(ids) if ids else None


def consumers(store: metadata_store.MetadataStore, artifact_id: int) -> list[int]:
    """Ids of the executions that took the artifact as an input, oldest first."""
    return sorted({e.execution_id for e in _events(store, artifact_id) if e.type in _INPUT_EVENTS})


def _by_key(
    store: metadata_store.MetadataStore, execution_id: int, kinds: Iterable[int]
) -> dict[str, list[metadata_store_pb2.Artifact]]:
    kinds = tuple(kinds)
    ids: dict[str, list[int]] = {}
    for event in store.get_events_by_execution_ids([execution_id]):
        if event.type in kinds and event.path.steps:
            ids.setdefault(event.path.steps[0].key, []).append(event.artifact_id)
    return {key: list(store.get_artifacts_by_id(values)) for key, values in ids.items()}


def inputs(
    store: metadata_store.MetadataStore, execution_id: int
) -> dict[str, list[metadata_store_pb2.Artifact]]:
    """Input key -> artifacts of an execution."""
    return _by_key(store, execution_id, _INPUT_EVENTS)


def outputs(
    store: metadata_store.MetadataStore, execution_id: int
) -> dict[str, list[metadata_store_pb2.Artifact]]:
    """Output key -> artifacts of an execution."""
    return _by_key(store, execution_id, _OUTPUT_EVENTS)


def uri_candidates(uri: str) -> list[str]:
    """The URI as written by a step, and as MLMD records it when it is a KFP mount path."""
    found = [uri]
    for mount, scheme in _MOUNTS.items():
        if uri.startswith(mount):
            found.append(scheme + uri[len(mount) :])
    return found


def find_model(
    store: metadata_store.MetadataStore, manifest: Mapping[str, Any]
) -> metadata_store_pb2.Artifact:
    """The model artifact a push manifest names.

    By `model_artifact_id` when that artifact has the manifest's `model_uri` (a BeamDagRunner
    store), else by URI (on KFP, TFX's container gives executors a hash of the artifact name as
    id, not the MLMD id).

    Raises:
      LineageError: If neither finds a produced artifact.
    """
    uri = manifest.get("model_uri") or ""
    artifact_id = manifest.get("model_artifact_id")
    if isinstance(artifact_id, int) and artifact_id > 0:
        for artifact in store.get_artifacts_by_id([artifact_id]):
            if not uri or artifact.uri == uri:
                return artifact
    for candidate in uri_candidates(uri) if uri else []:
        produced = [
            a for a in store.get_artifacts_by_uri(candidate) if producer(store, a.id) is not None
        ]
        if produced:
            return max(produced, key=lambda a: a.id)
    raise LineageError(
        f"the store has no model artifact with id {artifact_id} or URI {uri!r} "
        "(push manifest fields model_artifact_id, model_uri)"
    )


def _single_input(
    store: metadata_store.MetadataStore, execution_id: int, key: str, what: str
) -> metadata_store_pb2.Artifact:
    found = inputs(store, execution_id).get(key, [])
    if not found:
        raise LineageError(f"execution {execution_id} ({what}) has no input {key!r}")
    return found[0]


def _producer_or_fail(
    store: metadata_store.MetadataStore, artifact: metadata_store_pb2.Artifact, what: str
) -> int:
    execution_id = producer(store, artifact.id)
    if execution_id is None:
        raise LineageError(f"no execution produced {what} artifact {artifact.id} ({artifact.uri})")
    return execution_id


@dataclasses.dataclass(frozen=True)
class TrainingChain:
    """What a model was trained on, as MLMD records it.

    Attributes:
      model: The model artifact.
      trainer_execution: The execution that produced it.
      transform_execution: The execution that produced the Trainer's transform graph.
      examples: The raw Examples the model was trained on (ExampleGen's output, train and eval
        splits), read by the Trainer directly or, in runs that materialized transformed
        examples, through Transform.
      schema: The schema the Trainer consumed.
    """

    model: metadata_store_pb2.Artifact
    trainer_execution: int
    transform_execution: int
    examples: metadata_store_pb2.Artifact
    schema: metadata_store_pb2.Artifact | None


def training_chain(
    store: metadata_store.MetadataStore, model: metadata_store_pb2.Artifact
) -> TrainingChain:
    """Follows model -> Trainer -> its Examples and transform graph -> Transform.

    The Trainer reads ExampleGen's Examples and applies the transform graph itself (Transform
    does not materialize). Runs recorded before that read Transform's materialized examples:
    then the Trainer's `examples` were produced by Transform, whose own `examples` input is
    the raw data; both layouts are followed.

    Raises:
      LineageError: Naming the first link that is missing.
    """
    trainer = _producer_or_fail(store, model, "model")
    examples = _single_input(store, trainer, "examples", "Trainer")
    graph = _single_input(store, trainer, "transform_graph", "Trainer")
    transform = _producer_or_fail(store, graph, "transform graph")
    if producer(store, examples.id) == transform:
        examples = _single_input(store, transform, "examples", "Transform")
    schema = inputs(store, trainer).get("schema", [None])[0]
    return TrainingChain(model, trainer, transform, examples, schema)


def statistics_of(
    store: metadata_store.MetadataStore, examples: metadata_store_pb2.Artifact
) -> metadata_store_pb2.Artifact:
    """The newest `statistics` output of an execution that read these Examples (StatisticsGen).

    Raises:
      LineageError: If no execution that read them output statistics.
    """
    found = [
        artifact
        for execution_id in consumers(store, examples.id)
        for artifact in outputs(store, execution_id).get("statistics", [])
    ]
    if not found:
        raise LineageError(
            f"no statistics were computed from examples artifact {examples.id} ({examples.uri})"
        )
    return max(found, key=lambda a: a.id)
