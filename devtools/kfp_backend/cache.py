"""KFP v2's cache fingerprint (`driver/cache.go`, `cacheutils/cache.go` in `backend/src/v2`).

The key covers the input artifacts' names (their MLMD ids), the input parameter values, the
output artifacts' specs with the URI wiped, the output parameters' types, command + args, image
and PVC names: never the data behind the artifacts or what a step reads from outside. A task's
`cachingOptions.cacheKey` replaces all of it (hashed with the component name). The table of
fingerprints is the API server's (`ExecutionCache`), not ML-Metadata.
"""

import hashlib
import json
import os
import time
from collections.abc import Mapping, Sequence
from typing import Any


def cache_key(
    executor_input: Mapping[str, Any],
    output_parameter_types: Mapping[str, str],
    command_and_args: Sequence[str],
    image: str,
    pvc_names: Sequence[str] = (),
) -> dict[str, Any]:
    """Builds the CacheKey message as JSON (cacheutils GenerateCacheKey).

    Raises:
      ValueError: For an output parameter without a declared type (as the Go code does).
    """
    inputs = executor_input.get("inputs", {})
    outputs = executor_input.get("outputs", {})
    output_specs = {}
    for key, artifact_list in outputs.get("artifacts", {}).items():
        if not artifact_list.get("artifacts"):
            continue
        first = artifact_list["artifacts"][0]  # The Go code also keys on the first only.
        output_specs[key] = {k: first[k] for k in ("name", "type", "metadata") if first.get(k)}
    parameter_specs = {}
    for key in outputs.get("parameters", {}):
        if key not in output_parameter_types:
            raise ValueError(f"unknown parameter {key!r} found in ExecutorInput_Outputs")
        parameter_specs[key] = output_parameter_types[key]
    key_json: dict[str, Any] = {
        "inputArtifactNames": {
            k: {"artifactNames": [a.get("name", "") for a in v.get("artifacts", [])]}
            for k, v in inputs.get("artifacts", {}).items()
        },
        "inputParameterValues": dict(inputs.get("parameterValues", {})),
        "outputArtifactsSpec": output_specs,
        "outputParametersSpec": parameter_specs,
        "containerSpec": {
            "image": image,
            "cmdArgs": list(command_and_args),
            "pvcNames": sorted(set(pvc_names)),
        },
    }
    # protojson omits empty fields.
    return {k: v for k, v in key_json.items() if v}


def fingerprint(key: Mapping[str, Any]) -> str:
    """Hashes a cache key as GenerateFingerPrint does: sha256 of compact, key-sorted JSON."""
    text = json.dumps(key, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def custom_key_fingerprint(component_name: str, custom_key: str) -> str:
    """The fingerprint for a task's `cachingOptions.cacheKey` (driver/cache.go getFingerPrint)."""
    digest = hashlib.sha256()
    if component_name:
        digest.update(component_name.encode() + b"\0")
    digest.update(custom_key.encode())
    return digest.hexdigest()


class ExecutionCache:
    """The API server's cache table in `<state_dir>/cache.json` (`cacheutils` Client).

    KFP keeps it outside ML-Metadata: the driver asks the API server for the MLMD execution id
    recorded under a fingerprint (`driver/cache.go` getFingerPrintsAndID, GetExecutionCache)
    and adds an entry after a run (createCache, CreateExecutionCache).
    """

    def __init__(self, state_dir: str):
        """Opens (or starts) the table in `state_dir`."""
        self.path = os.path.join(state_dir, "cache.json")
        self.entries: list[dict[str, Any]] = []
        if os.path.exists(self.path):
            with open(self.path) as f:
                self.entries = json.load(f)

    def add(self, fingerprint: str, pipeline: str, namespace: str, execution_id: int) -> None:
        """Records a finished execution under its fingerprint and writes the table."""
        self.entries.append(
            {
                "fingerprint": fingerprint,
                "pipeline": pipeline,
                "namespace": namespace,
                "execution_id": execution_id,
                "created": time.time(),
            }
        )
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        with open(self.path + ".tmp", "w") as f:
            json.dump(self.entries, f, indent=1, sort_keys=True)
        os.replace(self.path + ".tmp", self.path)

    def lookup(self, fingerprint: str, pipeline: str, namespace: str) -> int | None:
        """The newest execution id with this fingerprint, or None."""
        matches = [
            e
            for e in self.entries
            if (e["fingerprint"], e["pipeline"], e["namespace"])
            == (fingerprint, pipeline, namespace)
        ]
        return int(matches[-1]["execution_id"]) if matches else None
