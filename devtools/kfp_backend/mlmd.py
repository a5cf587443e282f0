"""A small ML-Metadata stand-in kept as JSON in the emulated backend's state directory.

Holds what KFP's driver and launcher read back from MLMD: artifacts (URI, type title, custom
properties), executions (task name, run, state, fingerprint, output parameters, output
artifacts by key) and the cache table the API server keeps (`backend/src/v2/cacheutils`).
Metadata goes in and out through KFP's converter (`backend/src/v2/metadata/converter.go`).
"""

import json
import os
import time
from collections.abc import Mapping
from typing import Any


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


class MetadataStore:
    """Artifacts, executions and cache entries in `<state_dir>/mlmd.json` (one writer at a time)."""

    def __init__(self, state_dir: str):
        """Opens (or starts) the store in `state_dir`."""
        self.path = os.path.join(state_dir, "mlmd.json")
        self.data: dict[str, Any] = {"next_id": 1, "artifacts": {}, "executions": {}, "cache": []}
        if os.path.exists(self.path):
            with open(self.path) as f:
                self.data = json.load(f)

    def save(self) -> None:
        """Writes the store atomically."""
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        with open(self.path + ".tmp", "w") as f:
            json.dump(self.data, f, indent=1, sort_keys=True)
        os.replace(self.path + ".tmp", self.path)

    def _new_id(self) -> int:
        new = int(self.data["next_id"])
        self.data["next_id"] = new + 1
        return new

    def record_artifact(self, uri: str, title: str, metadata: Mapping[str, Any]) -> int:
        """Stores an output artifact; its metadata as custom properties. Returns its id.

        Raises:
          MetadataConversionError: For metadata MLMD cannot hold.
        """
        properties = {k: to_mlmd_value(k, v) for k, v in metadata.items()}
        artifact_id = self._new_id()
        self.data["artifacts"][str(artifact_id)] = {
            "uri": uri,
            "type": title,
            "custom_properties": properties,
        }
        return artifact_id

    def artifact(self, artifact_id: int) -> dict[str, Any]:
        """Returns the RuntimeArtifact JSON the driver rebuilds from MLMD (client.go).

        Its name is the MLMD id, its type has an empty schema (the driver does not keep it).
        """
        stored = self.data["artifacts"][str(artifact_id)]
        return {
            "name": str(artifact_id),
            "uri": stored["uri"],
            "type": {"instanceSchema": ""},
            "metadata": {k: from_mlmd_value(v) for k, v in stored["custom_properties"].items()},
        }

    def artifact_title(self, artifact_id: int) -> str:
        """Returns the schema title the launcher recorded as the artifact's MLMD type."""
        return str(self.data["artifacts"][str(artifact_id)]["type"])

    def record_execution(
        self,
        *,
        pipeline: str,
        run_id: str,
        task_name: str,
        state: str,
        fingerprint: str,
        outputs: Mapping[str, int],
        parameters: Mapping[str, Any],
    ) -> int:
        """Stores an execution with its output artifacts (by key) and output parameters."""
        execution_id = self._new_id()
        self.data["executions"][str(execution_id)] = {
            "pipeline": pipeline,
            "run_id": run_id,
            "task_name": task_name,
            "state": state,
            "fingerprint": fingerprint,
            "outputs": dict(outputs),
            "parameters": dict(parameters),
        }
        return execution_id

    def execution(self, execution_id: int) -> dict[str, Any]:
        """Returns a stored execution."""
        return dict(self.data["executions"][str(execution_id)])

    def add_cache_entry(self, fingerprint: str, pipeline: str, namespace: str, execution_id: int):
        """Records a finished execution under its fingerprint (cacheutils CreateExecutionCache)."""
        self.data["cache"].append(
            {
                "fingerprint": fingerprint,
                "pipeline": pipeline,
                "namespace": namespace,
                "execution_id": execution_id,
                "created": time.time(),
            }
        )

    def cached_execution(self, fingerprint: str, pipeline: str, namespace: str) -> int | None:
        """Returns the newest execution with this fingerprint (cacheutils GetExecutionCache)."""
        matches = [
            e
            for e in self.data["cache"]
            if (e["fingerprint"], e["pipeline"], e["namespace"])
            == (fingerprint, pipeline, namespace)
        ]
        return int(matches[-1]["execution_id"]) if matches else None
