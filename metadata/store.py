"""ML-Metadata opened one way: a SQLite path or `host:port` -> a store; property values read once.

Every reader (lineage, monitor, summary, the DriftGate's lineage walk, benches, tests and the
emulated KFP backend) opens stores here, so read-only SQLite, the gRPC client timeout and the
"which of the two is it" rule are decided in one place.
"""

import os
from typing import Any, TypeAlias

from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2

# A direct connection (local SQLite) or a gRPC client config (KFP's metadata-grpc-service).
MetadataConfig: TypeAlias = (
    metadata_store_pb2.ConnectionConfig | metadata_store_pb2.MetadataStoreClientConfig
)
# Seconds a gRPC call to the metadata service may take before it fails (not forever).
CLIENT_TIMEOUT_S = 30

_READONLY = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
_CREATE = metadata_store_pb2.SqliteMetadataSourceConfig.READWRITE_OPENCREATE


class StoreNotFoundError(LookupError):
    """A SQLite store that is to be read does not exist: no run was recorded there."""


def sqlite_config(path: str, *, writable: bool = False) -> metadata_store_pb2.ConnectionConfig:
    """A SQLite connection: read-only, or read-write creating the file (and its folder)."""
    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = os.path.abspath(path)
    config.sqlite.connection_mode = _CREATE if writable else _READONLY
    return config


def parse_target(target: str) -> MetadataConfig:
    """`host:port` (KFP's metadata-grpc-service) or a SQLite file path -> a connection config.

    A target is a service when it ends in `:<digits>` and is not an existing file; a SQLite
    store is opened read-only.

    Raises:
      ValueError: If the target is empty.
    """
    if not target:
        raise ValueError("ML-Metadata target is empty: give a SQLite file or host:port")
    host, sep, port = target.rpartition(":")
    if sep and host and port.isdigit() and not os.path.exists(target):
        return metadata_store_pb2.MetadataStoreClientConfig(
            host=host, port=int(port), client_timeout_sec=CLIENT_TIMEOUT_S
        )
    return sqlite_config(target)


def open_store(config: MetadataConfig | str) -> metadata_store.MetadataStore:
    """Opens a store from a config or a target (`parse_target`).

    A read-only SQLite store must exist (ML-Metadata would otherwise fail with a bare
    "unable to open database file"); a gRPC client gets the timeout when none is set.

    Raises:
      StoreNotFoundError: If a read-only SQLite file does not exist.
    """
    if isinstance(config, str):
        config = parse_target(config)
    if isinstance(config, metadata_store_pb2.MetadataStoreClientConfig):
        if not config.client_timeout_sec:
            config.client_timeout_sec = CLIENT_TIMEOUT_S
        return metadata_store.MetadataStore(config)
    if config.HasField("sqlite"):
        path = config.sqlite.filename_uri
        if config.sqlite.connection_mode == _CREATE:
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        elif not os.path.isfile(path):
            raise StoreNotFoundError(f"No ML-Metadata store at {path}: no run recorded there")
    return metadata_store.MetadataStore(config)


def property_value(
    item: metadata_store_pb2.Artifact | metadata_store_pb2.Execution | metadata_store_pb2.Context,
    name: str,
) -> Any:
    """A custom property's value, else a typed property's, else None.

    Custom properties come first: TFX and KFP write what steps record there.
    """
    for props in (item.custom_properties, item.properties):
        if name in props:
            value = props[name]
            kind = value.WhichOneof("value")
            return getattr(value, kind) if kind else None
    return None


_STATE_NAMES = {
    metadata_store_pb2.Execution.COMPLETE: "complete",
    metadata_store_pb2.Execution.CACHED: "cached",
    metadata_store_pb2.Execution.FAILED: "failed",
    metadata_store_pb2.Execution.RUNNING: "running",
    metadata_store_pb2.Execution.CANCELED: "canceled",
    metadata_store_pb2.Execution.NEW: "new",
}


def execution_state(execution: metadata_store_pb2.Execution) -> str:
    """`complete`, `cached`, `failed`, `running`, `canceled`, `new` or `unknown`."""
    return _STATE_NAMES.get(execution.last_known_state, "unknown")
