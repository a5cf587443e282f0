"""ML-Metadata opened one way: targets, read-only SQLite, property values, execution states."""

import pytest
from ml_metadata import errors
from ml_metadata.proto import metadata_store_pb2

from metadata import lineage_graph
from metadata import store as mlmd


def test_host_and_port_name_the_metadata_service_with_a_timeout(tmp_path) -> None:
    config = mlmd.parse_target("metadata-grpc-service.kubeflow:8080")
    assert isinstance(config, metadata_store_pb2.MetadataStoreClientConfig)
    assert (config.host, config.port) == ("metadata-grpc-service.kubeflow", 8080)
    assert config.client_timeout_sec == mlmd.CLIENT_TIMEOUT_S
    # An existing file whose name looks like host:port is a SQLite store.
    odd = tmp_path / "store:8080"
    mlmd.open_store(mlmd.sqlite_config(str(odd), writable=True))
    assert mlmd.parse_target(str(odd)).sqlite.filename_uri == str(odd)
    with pytest.raises(ValueError, match="target is empty"):
        mlmd.parse_target("")


def test_sqlite_is_read_only_and_must_exist_unless_written(tmp_path) -> None:
    path = str(tmp_path / "runs" / "mlmd.sqlite")
    with pytest.raises(mlmd.StoreNotFoundError, match="no run recorded"):
        mlmd.open_store(path)
    writer = mlmd.open_store(mlmd.sqlite_config(path, writable=True))
    type_id = writer.put_artifact_type(metadata_store_pb2.ArtifactType(name="Examples"))
    artifact = metadata_store_pb2.Artifact(type_id=type_id, uri="/data")
    artifact.custom_properties["span"].int_value = 3
    [artifact_id] = writer.put_artifacts([artifact])
    reader = mlmd.open_store(path)
    assert mlmd.sqlite_config(path).sqlite.connection_mode == (
        metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
    )
    [read] = reader.get_artifacts_by_id([artifact_id])
    assert mlmd.property_value(read, "span") == 3
    assert mlmd.property_value(read, "absent") is None
    with pytest.raises(errors.InternalError, match="readonly database"):
        reader.put_artifact_type(metadata_store_pb2.ArtifactType(name="Model"))


def test_the_drift_gate_connection_opens_the_same_way(tmp_path) -> None:
    path = str(tmp_path / "mlmd.sqlite")
    encoded = lineage_graph.encode_connection(mlmd.parse_target(path))
    with pytest.raises(lineage_graph.LineageError, match="No ML-Metadata store"):
        lineage_graph.connect(encoded)
    mlmd.open_store(mlmd.sqlite_config(path, writable=True))
    assert lineage_graph.connect(encoded).get_artifacts() == []


def test_execution_states_have_names() -> None:
    cached = metadata_store_pb2.Execution(last_known_state=metadata_store_pb2.Execution.CACHED)
    assert mlmd.execution_state(cached) == "cached"
    assert mlmd.execution_state(metadata_store_pb2.Execution()) == "unknown"
