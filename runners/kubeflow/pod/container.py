"""Container entrypoint of every TFX step on open-source KFP v2: local paths, then the executor.

KFP's v2 launcher downloads each input artifact from the object store to a local path
(`gs://b/k` -> `/gcs/b/k`, `s3://` -> `/s3/`, `minio://` -> `/minio/`), runs the container, then
uploads each output artifact from its local path; it keeps whatever URI the executor reports.
TFX's `kubeflow_v2_run_executor` would hand the remote URIs to the executor, which TF cannot
open for `s3://`/`minio://` and which would bypass the launcher's upload. So this entrypoint:

1. rewrites every artifact URI the launcher can mount to that local path;
2. runs TFX's executor entrypoint on the rewritten input;
3. rewrites the output URIs in the ExecutorOutput back to the remote ones;
4. exits without interpreter teardown (ML-Metadata/protobuf can crash there after success).
"""

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from absl import logging

from runners.kubeflow.pod import tfx_executor

# Where the launcher mounts each object-store scheme.
MOUNT_DIRS = {"gs://": "gcs", "s3://": "s3", "minio://": "minio"}
# The output the KFP driver adds to every step when log publishing is on (the default): the
# launcher itself streams the step's stdout/stderr into its local path and uploads it
# (`backend/src/v2/driver/driver.go` provisionOutputs, `component/launcher_v2.go` getLogWriter).
EXECUTOR_LOGS_KEY = "executor-logs"
# MLMD keeps list and struct metadata wrapped in a one-key struct
# (`backend/src/v2/metadata/converter.go` StructValueToMLMDValue).
MLMD_WRAPPER_KEYS = ("list", "struct")


def local_path_for_uri(uri: str, mount_root: str = "/") -> str | None:
    """Returns where KFP's launcher puts an artifact with this URI, or None if it does not.

    Args:
      uri: Artifact URI (e.g. `minio://mlpipeline/v2/artifacts/run/task/examples`).
      mount_root: Root the launcher's `/gcs`, `/s3`, `/minio` directories live under.

    Returns:
      The local path, or None for URIs the launcher does not download (plain paths).
    """
    for prefix, mount in MOUNT_DIRS.items():
        if uri.startswith(prefix):
            return os.path.join(mount_root, mount, uri[len(prefix) :])
    return None


def map_artifact_uris(
    artifacts: dict[str, Any], mapping: Callable[[str], str | None]
) -> dict[str, str]:
    """Rewrites `uri`s in an ExecutorInput/ExecutorOutput `artifacts` JSON map in place.

    Args:
      artifacts: `{key: {"artifacts": [{"uri": ...}, ...]}}`.
      mapping: Returns the new URI, or None to keep the old one.

    Returns:
      New URI -> old URI for every rewritten artifact.
    """
    reverse = {}
    for artifact_list in artifacts.values():
        for artifact in artifact_list.get("artifacts", []):
            new = mapping(artifact.get("uri", ""))
            if new is not None:
                reverse[new] = artifact["uri"]
                artifact["uri"] = new
    return reverse


def schema_title(artifact_type: dict[str, Any]) -> str:
    """Returns the title of an ArtifactTypeSchema JSON (`schemaTitle` or YAML `instanceSchema`)."""
    import yaml  # Imported here: only steps need it.

    if artifact_type.get("schemaTitle"):
        return str(artifact_type["schemaTitle"])
    schema = yaml.safe_load(artifact_type.get("instanceSchema") or "") or {}
    return str(schema.get("title", "")) if isinstance(schema, dict) else ""


def unwrap_mlmd_value(value: Any) -> Any:
    """Undoes MLMD's wrapping of list and struct metadata (`{"list": [...]}`, `{"struct": {}}`)."""
    if isinstance(value, dict) and len(value) == 1:
        ((key, inner),) = value.items()
        if key in MLMD_WRAPPER_KEYS:
            return inner
    return value


def fix_executor_input(
    executor_input: dict[str, Any], inputs_spec: dict[str, Any] | None
) -> dict[str, Any]:
    """Turns the ExecutorInput open-source KFP's driver builds into one TFX can parse, in place.

    - Drops the `executor-logs` output: TFX would import its type `system.Artifact` as a class
      and fail; the launcher writes and uploads that file itself.
    - Restores the type of each input artifact the driver rebuilt from MLMD without a schema
      (`{"instanceSchema": ""}`, `backend/src/v2/metadata/client.go`
      GetOutputArtifactsByExecutionId) from this step's own inputs spec.
    - Maps `system.*` titles (KFP UI types) to the project's class path
      (`components.ui_artifacts.CLASS_PATH_BY_TITLE`): TFX imports a title as a class path.
    - Unwraps list/struct metadata that came back wrapped from MLMD.
    - Creates an input's local directory when the object store had no file for it (an empty
      output directory does not survive the upload, `backend/src/v2/objectstore/object_store.go`).
      This runs after the URIs were mapped; see `run`.

    Args:
      executor_input: ExecutorInput JSON.
      inputs_spec: The step's `--json_serialized_inputs_spec_args` (ComponentInputsSpec JSON).

    Returns:
      The same dict.

    Raises:
      ValueError: For an untyped input the inputs spec does not describe, naming it.
    """
    from components.ui_artifacts import CLASS_PATH_BY_TITLE

    outputs = executor_input.setdefault("outputs", {}).setdefault("artifacts", {})
    outputs.pop(EXECUTOR_LOGS_KEY, None)
    specs = (inputs_spec or {}).get("artifacts", {})
    inputs = executor_input.setdefault("inputs", {}).setdefault("artifacts", {})
    for direction, artifacts in (("input", inputs), ("output", outputs)):
        for key, artifact_list in artifacts.items():
            for artifact in artifact_list.get("artifacts", []):
                artifact_type = artifact.get("type") or {}
                if direction == "input" and not schema_title(artifact_type):
                    if key not in specs:
                        raise ValueError(
                            f"input artifact {key!r} arrived without a type {artifact_type!r} "
                            "and --json_serialized_inputs_spec_args does not describe it"
                        )
                    artifact_type = dict(specs[key]["artifactType"])
                title = schema_title(artifact_type)
                if title in CLASS_PATH_BY_TITLE:
                    artifact_type = {"schemaTitle": CLASS_PATH_BY_TITLE[title]}
                artifact["type"] = artifact_type
                if direction == "input" and "metadata" in artifact:
                    artifact["metadata"] = {
                        k: unwrap_mlmd_value(v) for k, v in artifact["metadata"].items()
                    }
    return executor_input


def recreate_missing_input_dirs(executor_input: dict[str, Any]) -> list[str]:
    """Creates the local path of every input artifact that has none; returns those paths.

    The launcher downloads files only: an artifact that was an empty directory arrives as
    nothing at all (`backend/src/v2/objectstore/object_store.go` UploadBlob/DownloadBlob).
    """
    created = []
    for artifact_list in executor_input.get("inputs", {}).get("artifacts", {}).values():
        for artifact in artifact_list.get("artifacts", []):
            uri = artifact.get("uri", "")
            if uri.startswith("/") and not os.path.exists(uri):
                os.makedirs(uri)
                created.append(uri)
    return created


def _parse_args(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--executor_class_path", required=True)
    parser.add_argument("--json_serialized_invocation_args", required=True)
    parser.add_argument("--json_serialized_inputs_spec_args", default=None)
    return parser.parse_known_args(list(argv))


def run(argv: Sequence[str]) -> None:
    """Runs one step as described in the module docstring.

    Args:
      argv: Container args: TFX's `--executor_class_path`, `--json_serialized_invocation_args`
        (the filled `{{$}}`), `--json_serialized_inputs_spec_args`, then Beam args.

    Raises:
      ValueError: If the executor input is not valid ExecutorInput JSON.
    """
    args, beam_args = _parse_args(argv)
    try:
        executor_input = json.loads(args.json_serialized_invocation_args)
    except ValueError as e:
        raise ValueError(
            "--json_serialized_invocation_args is not JSON: "
            f"{args.json_serialized_invocation_args[:200]!r}"
        ) from e
    inputs_spec = (
        json.loads(args.json_serialized_inputs_spec_args)
        if args.json_serialized_inputs_spec_args
        else None
    )
    fix_executor_input(executor_input, inputs_spec)
    to_remote = map_artifact_uris(
        executor_input.get("inputs", {}).get("artifacts", {}), local_path_for_uri
    )
    to_remote |= map_artifact_uris(
        executor_input.get("outputs", {}).get("artifacts", {}), local_path_for_uri
    )
    for path in recreate_missing_input_dirs(executor_input):
        logging.warning("Input %s had no files in the object store: created it empty", path)
    args.json_serialized_invocation_args = json.dumps(executor_input)
    output_file = executor_input["outputs"]["outputFile"]

    tfx_executor.run_executor(args, beam_args)

    with open(output_file) as f:
        executor_output = json.load(f)
    outputs = executor_output.get("artifacts", {})
    map_artifact_uris(outputs, to_remote.get)
    for artifact_list in outputs.values():
        for artifact in artifact_list.get("artifacts", []):
            metadata = artifact.get("metadata", {})
            for key, value in metadata.items():
                # E.g. the Evaluator records the model URIs it compared in the blessing.
                if isinstance(value, str) and value in to_remote:
                    metadata[key] = to_remote[value]
    with open(output_file, "w") as f:
        json.dump(executor_output, f, sort_keys=True)
    logging.info("Wrote ExecutorOutput with remote URIs to %s", output_file)


def main() -> None:
    """Console entry: runs the step, then exits at once (no interpreter teardown)."""
    logging.set_verbosity(logging.INFO)
    try:
        run(sys.argv[1:])
    except BaseException:
        logging.exception("Step failed")
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(1)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
