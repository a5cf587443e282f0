"""Validates a spec's Kubernetes platform section against kfp-kubernetes' protos (tool venv script).

Run with the `.venv-kfp-kubernetes` interpreter (kfp-kubernetes needs protobuf >= 4, which the
main environment cannot have): `python devtools/validate_platform.py SPEC.yaml`.
Imports nothing from this project. Prints one JSON summary line; exits 1 on any problem.
"""

import json
import sys

import yaml
from google.protobuf import json_format


def validate(path: str) -> dict:
    """Parses every executor config of the platform section strictly into KubernetesExecutorConfig.

    Args:
      path: Compiled spec (PipelineSpec document, then PlatformSpec document).

    Returns:
      `{"executors": {label: parsed-back JSON}, "kfp_kubernetes": version}`.

    Raises:
      ValueError: If the platform document is missing, names an unknown executor, or a config
        does not parse (unknown field, wrong type), naming the executor.
    """
    from importlib import metadata

    from kfp.kubernetes import kubernetes_executor_config_pb2 as k8s_pb2
    from kfp.pipeline_spec import pipeline_spec_pb2

    with open(path) as f:
        documents = [d for d in yaml.safe_load_all(f) if d is not None]
    if len(documents) != 2:
        raise ValueError(
            f"{path}: expected a PipelineSpec and a PlatformSpec document, got {len(documents)}"
        )
    pipeline_doc, platform_doc = documents
    platform = pipeline_spec_pb2.PlatformSpec()
    json_format.ParseDict(platform_doc, platform, ignore_unknown_fields=False)
    if set(platform.platforms) != {"kubernetes"}:
        raise ValueError(f"{path}: platforms {sorted(platform.platforms)}, expected ['kubernetes']")
    known = set(pipeline_doc["deploymentSpec"]["executors"])
    parsed = {}
    executors = platform_doc["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    for label in sorted(executors):
        if label not in known:
            raise ValueError(f"{path}: platform config for unknown executor {label!r}")
        message = k8s_pb2.KubernetesExecutorConfig()
        try:
            json_format.ParseDict(executors[label], message, ignore_unknown_fields=False)
        except json_format.ParseError as e:
            raise ValueError(f"{path}: executor {label}: {e}") from e
        parsed[label] = json_format.MessageToDict(message)
    return {"executors": parsed, "kfp_kubernetes": metadata.version("kfp-kubernetes")}


def main() -> int:
    """Command line entry."""
    if len(sys.argv) != 2:
        print(f"usage: {sys.argv[0]} SPEC.yaml", file=sys.stderr)
        return 2
    try:
        result = validate(sys.argv[1])
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(json.dumps(result, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
