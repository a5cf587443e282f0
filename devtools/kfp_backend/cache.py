"""KFP v2's cache fingerprint (`driver/cache.go`, `cacheutils/cache.go` in `backend/src/v2`).

The key covers the input artifacts' names (their MLMD ids), the input parameter values, the
output artifacts' specs with the URI wiped, the output parameters' types, command + args, image
and PVC names: never the data behind the artifacts or what a step reads from outside. A task's
`cachingOptions.cacheKey` replaces all of it (hashed with the component name).
"""

import hashlib
import json
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
