"""Lineage of pushed models from ML-Metadata: a version back to its data and code, data to models.

`taxi lineage [--version V] [--json]` answers "what is being served, and
what made it": the push, the model artifact, its blessing and metrics, the Trainer and
Transform executions, the schema (content hash) and the drift gate's verdict, the data version
(DataPrep's metadata: source files with hashes, rows, time ranges, age of the newest training
row), the code version and the pipeline run. `lineage --data VERSION` lists the models trained
on a data version. The walk is `metadata.lineage_graph`'s (events only), so it
reads the same on a BeamDagRunner SQLite store and on KFP's metadata-grpc-service.
"""

import contextlib
import hashlib
import importlib.metadata
import json
import os
import subprocess
import time
from typing import Any

import tensorflow as tf
from ml_metadata import errors as mlmd_errors
from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2

import model_contract
from components.data_prep import executor as data_prep_executor
from components.drift_gate import executor as drift_executor
from metadata import lineage_graph
from metadata import store as mlmd

PACKAGE = "tfx-taxi-kfp"
SERVED = "served"
NOT_SERVED = "not served (an older version)"
ROLLED_BACK = "rolled back"


class LineageNotFoundError(LookupError):
    """The version or data version asked for does not exist; the message lists what does."""


def code_provenance() -> dict[str, str]:
    """The running code's version, for push manifests: package version and git commit if known.

    The commit is read with `git` from the package's own checkout (an editable install);
    `+dirty` marks uncommitted changes. Absent in an installed wheel or image (there the image
    names the code).
    """
    found = {}
    with contextlib.suppress(importlib.metadata.PackageNotFoundError):
        found["package_version"] = importlib.metadata.version(PACKAGE)
    checkout = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        commit = subprocess.run(
            ["git", "-C", checkout, "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", checkout, "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return found  # No git, or not a checkout: the commit is unknown.
    found["git_commit"] = commit + ("+dirty" if dirty else "")
    return found


# The first 16 bytes of every SQLite 3 database file (sqlite.org/fileformat.html, 1.3.1).
_SQLITE_HEADER = b"SQLite format 3\x00"


def sqlite_store(metadata_path: str) -> metadata_store.MetadataStore:
    """Opens a local SQLite MLMD store read-only.

    Raises:
      LineageNotFoundError: If the file does not exist or is empty (no run recorded there).
      lineage_graph.LineageError: If the file is not an ML-Metadata SQLite database.
    """
    if not os.path.isfile(metadata_path):
        raise LineageNotFoundError(f"No ML-Metadata store at {metadata_path}: no run recorded")
    try:
        with open(metadata_path, "rb") as f:
            header = f.read(len(_SQLITE_HEADER))
    except OSError as e:
        raise lineage_graph.LineageError(f"{metadata_path}: cannot read: {e.strerror}") from None
    if not header:
        raise LineageNotFoundError(f"{metadata_path} is empty: no run recorded")
    if header != _SQLITE_HEADER:
        raise lineage_graph.LineageError(
            f"{metadata_path} is not an SQLite database (ML-Metadata's store)"
        )
    try:
        store = mlmd.open_store(mlmd.sqlite_config(metadata_path))
        # Opening is lazy about the schema: one read proves the tables are ML-Metadata's.
        store.get_artifact_types()
    except (mlmd_errors.StatusError, RuntimeError) as e:  # RuntimeError: MLMD's C++ open
        raise lineage_graph.LineageError(
            f"{metadata_path} is not a readable ML-Metadata store: {_first_line(e)}"
        ) from None
    return store


def _first_line(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0]


def _manifest(version_dir: str) -> dict[str, Any]:
    """The version's push manifest ({} when it has none).

    Raises:
      lineage_graph.LineageError: If the manifest is not a JSON object.
    """
    try:
        return model_contract.read_manifest(tf.io.gfile, version_dir)
    except (ValueError, UnicodeDecodeError, tf.errors.OpError) as e:
        raise lineage_graph.LineageError(
            f"the push manifest in {version_dir} cannot be read: {_first_line(e)}"
        ) from None


def _execution(store: metadata_store.MetadataStore, execution_id: int) -> dict[str, Any]:
    [execution] = store.get_executions_by_id([execution_id])
    return {
        "execution_id": execution_id,
        "node": lineage_graph.node_id(store, execution_id) or execution.type,
        "state": mlmd.execution_state(execution),
        "started": _iso(execution.create_time_since_epoch / 1000),
        "finished": _iso(execution.last_update_time_since_epoch / 1000),
    }


def _iso(stamp: float | None) -> str | None:
    if not stamp:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(stamp))


def _drift_verdict(
    store: metadata_store.MetadataStore,
    schema: metadata_store_pb2.Artifact,
    model: metadata_store_pb2.Artifact,
) -> metadata_store_pb2.Artifact | None:
    """DriftGate's output that let the model train, or None.

    Transform runs after DriftGate but reads the AnomaliesGate's schema (DriftGate is cached on
    the served model; see `pipeline.create_components`), so the verdict is the newest DriftGate
    output from that same schema recorded before the model's first Trainer execution.
    """
    trained = [
        e.execution_id
        for e in store.get_events_by_artifact_ids([model.id])
        if e.type == metadata_store_pb2.Event.OUTPUT
    ]
    if not trained:
        return None
    verdicts = [
        artifact
        for execution_id in lineage_graph.consumers(store, schema.id)
        if execution_id < min(trained)
        for artifact in lineage_graph.outputs(store, execution_id).get("validated_schema", [])
        if drift_executor.OUTCOME_PROPERTY in artifact.custom_properties
    ]
    return max(verdicts, key=lambda a: a.id) if verdicts else None


def _file_sha256(path: str) -> str | None:
    if not tf.io.gfile.exists(path):
        return None
    digest = hashlib.sha256()
    with tf.io.gfile.GFile(path, "rb") as f:
        digest.update(f.read())
    return digest.hexdigest()


def version_dirs(model_dir: str) -> dict[int, tuple[str, str]]:
    """Version -> (directory, status) for every served, older and rolled-back version."""
    served = model_contract.latest_version(tf.io.gfile, model_dir)
    found: dict[int, tuple[str, str]] = {}
    for version in model_contract.list_versions(tf.io.gfile, model_dir):
        status = SERVED if version == served else NOT_SERVED
        found[version] = (os.path.join(model_dir, str(version)), status)
    if tf.io.gfile.isdir(model_dir):
        for child in tf.io.gfile.listdir(model_dir):
            name = child.rstrip("/")
            withdrawn = model_contract.withdrawn_version(name)
            if withdrawn is not None:
                found.setdefault(withdrawn, (os.path.join(model_dir, name), ROLLED_BACK))
    return found


def data_metadata(
    store: metadata_store.MetadataStore, examples: metadata_store_pb2.Artifact, now: float
) -> dict[str, Any]:
    """DataPrep's metadata for the Examples ExampleGen made from its output ({} if not found)."""
    producer = lineage_graph.producer(store, examples.id)
    prepared = (
        lineage_graph.inputs(store, producer).get(data_prep_executor.PREPARED_DATA_KEY, [])
        if producer is not None
        else []
    )
    if not prepared:
        return {}
    artifact = prepared[0]
    train_end = mlmd.property_value(artifact, "train_end_time")
    files = mlmd.property_value(artifact, data_prep_executor.SOURCE_FILES_PROPERTY)
    return {
        "data_version": mlmd.property_value(artifact, data_prep_executor.DATA_VERSION_PROPERTY),
        "prepared_data_uri": artifact.uri,
        "source_uri": mlmd.property_value(artifact, data_prep_executor.SOURCE_URI_PROPERTY),
        "source_fingerprint": mlmd.property_value(
            artifact, data_prep_executor.SOURCE_FINGERPRINT_PROPERTY
        ),
        "source_files": json.loads(files) if files else [],
        "train_rows": mlmd.property_value(artifact, data_prep_executor.TRAIN_ROWS_PROPERTY),
        "eval_rows": mlmd.property_value(artifact, data_prep_executor.EVAL_ROWS_PROPERTY),
        "train_time_range": [
            _iso(mlmd.property_value(artifact, "train_start_time")),
            _iso(train_end),
        ],
        "eval_time_range": [
            _iso(mlmd.property_value(artifact, "eval_start_time")),
            _iso(mlmd.property_value(artifact, "eval_end_time")),
        ],
        "newest_training_row_age_days": round((now - train_end) / 86400, 1) if train_end else None,
    }


def _evaluation(
    store: metadata_store.MetadataStore, blessing_uri: str | None
) -> tuple[dict[str, Any], dict[str, dict[str, float]]]:
    from operations import summary  # TFMA: imported only when a blessing is looked up.

    blessings = store.get_artifacts_by_uri(blessing_uri) if blessing_uri else []
    if not blessings:
        return {"uri": blessing_uri, "blessed": None}, {}
    blessing = max(blessings, key=lambda a: a.id)
    found: dict[str, Any] = {
        "uri": blessing.uri,
        "blessed": bool(mlmd.property_value(blessing, "blessed")),
    }
    metrics: dict[str, dict[str, float]] = {}
    evaluator = lineage_graph.producer(store, blessing.id)
    if evaluator is not None:
        found["evaluator"] = _execution(store, evaluator)
        for evaluation in lineage_graph.outputs(store, evaluator).get("evaluation", []):
            found["evaluation_uri"] = evaluation.uri
            metrics = summary.headline_metrics(evaluation.uri)
    return found, metrics


def version_lineage(
    store: metadata_store.MetadataStore,
    model_dir: str,
    version: int | None = None,
    now: float | None = None,
) -> dict[str, Any]:
    """The full chain of a pushed version (default: the one TF Serving serves now).

    Args:
      store: The MLMD store the pipeline recorded its runs in.
      model_dir: `<serving_base>/<model_name>`.
      version: A version (served, older or rolled back); None = the served one.
      now: Unix time for the data's age (default: now).

    Returns:
      A JSON-ready dict: version, status, push, model, blessing, metrics, trainer,
      transform, schema, drift gate, data, code, pipeline run.

    Raises:
      LineageNotFoundError: If the version does not exist (the message lists those that do).
      lineage_graph.LineageError: If a link of the chain is missing from the store.
    """
    now = time.time() if now is None else now
    dirs = version_dirs(model_dir)
    if version is None:
        version = model_contract.latest_version(tf.io.gfile, model_dir)
        if version is None:
            raise LineageNotFoundError(f"No version is served from {model_dir}")
    if version not in dirs:
        raise LineageNotFoundError(
            f"Version {version} is not in {model_dir}; versions: "
            + (", ".join(f"{v} ({status})" for v, (_, status) in sorted(dirs.items())) or "none")
        )
    version_dir, status = dirs[version]
    manifest = _manifest(version_dir)
    if not manifest:
        raise lineage_graph.LineageError(f"{version_dir} has no push manifest")
    model = lineage_graph.find_model(store, manifest)
    chain = lineage_graph.training_chain(store, model)
    blessing, metrics = _evaluation(store, manifest.get("model_blessing_uri"))
    schema: dict[str, Any] = {}
    drift: dict[str, Any] = {}
    if chain.schema is not None:
        schema = {
            "uri": chain.schema.uri,
            "sha256": _file_sha256(os.path.join(chain.schema.uri, "schema.pbtxt")),
        }
        verdict = _drift_verdict(store, chain.schema, model)
        if verdict is not None:
            drift = {
                "outcome": mlmd.property_value(verdict, drift_executor.OUTCOME_PROPERTY),
                "baseline_version": mlmd.property_value(
                    verdict, drift_executor.BASELINE_VERSION_PROPERTY
                ),
            }
    code = {
        key: manifest[key]
        for key in ("package_version", "git_commit", "image", "orchestrator")
        if key in manifest
    }
    return {
        "model_name": manifest.get("model_name", os.path.basename(model_dir.rstrip("/"))),
        "version": version,
        "status": status,
        "version_dir": version_dir,
        "pushed_at": manifest.get("pushed_at"),
        "pipeline_run_id": manifest.get("pipeline_run_id"),
        "model": {"artifact_id": model.id, "uri": model.uri},
        "blessing": blessing,
        "metrics": metrics,
        "trainer": _execution(store, chain.trainer_execution),
        "transform": _execution(store, chain.transform_execution),
        "schema": schema,
        "drift_gate": drift,
        "data": data_metadata(store, chain.examples, now),
        "code": code,
    }


def _consumers_outputs(
    store: metadata_store.MetadataStore, artifacts: list[metadata_store_pb2.Artifact], key: str
) -> list[metadata_store_pb2.Artifact]:
    found: dict[int, metadata_store_pb2.Artifact] = {}
    for artifact in artifacts:
        for execution_id in lineage_graph.consumers(store, artifact.id):
            for output in lineage_graph.outputs(store, execution_id).get(key, []):
                found[output.id] = output
    return [found[i] for i in sorted(found)]


def data_lineage(
    store: metadata_store.MetadataStore, model_dir: str, data_version: str
) -> dict[str, Any]:
    """The models trained on a data version, and the versions they were pushed as.

    Follows prepared data -> ExampleGen -> Examples -> Trainer -> models (and, for runs that
    materialized transformed examples, Examples -> Transform -> transformed examples ->
    Trainer); a model's pushed versions come from the push manifests in `model_dir`.

    Raises:
      LineageNotFoundError: If no run prepared that data version (the message lists some).
    """
    prepared = [
        a
        for a in store.get_artifacts_by_type("data_prep.PreparedData")
        if mlmd.property_value(a, data_prep_executor.DATA_VERSION_PROPERTY) == data_version
    ]
    if not prepared:
        known = sorted(
            {
                str(mlmd.property_value(a, data_prep_executor.DATA_VERSION_PROPERTY))
                for a in store.get_artifacts_by_type("data_prep.PreparedData")
            }
        )
        raise LineageNotFoundError(
            f"No run prepared data version {data_version!r}; known: {', '.join(known) or 'none'}"
        )
    examples = _consumers_outputs(store, prepared, "examples")
    transformed = _consumers_outputs(store, examples, "transformed_examples")
    models = _consumers_outputs(store, [*examples, *transformed], "model")
    pushed: dict[str, list[dict[str, Any]]] = {}
    for version, (version_dir, status) in sorted(version_dirs(model_dir).items()):
        manifest = _manifest(version_dir)
        if manifest.get("model_uri"):
            pushed.setdefault(manifest["model_uri"], []).append(
                {"version": version, "status": status, "pushed_at": manifest.get("pushed_at")}
            )
    found = []
    for model in models:
        trainer = lineage_graph.producer(store, model.id)
        found.append(
            {
                "artifact_id": model.id,
                "uri": model.uri,
                "trainer": None if trainer is None else _execution(store, trainer),
                "pushed_versions": pushed.get(model.uri, []),
            }
        )
    return {
        "data_version": data_version,
        "prepared_data_uris": [a.uri for a in prepared],
        "models": found,
    }


def format_version_lineage(found: dict[str, Any]) -> str:
    """Renders `version_lineage` for the terminal."""
    data, code, blessing = found["data"], found["code"], found["blessing"]

    from operations.summary import CREDIT_CARD, metrics_line

    def metrics(name: str) -> str:
        return metrics_line(found["metrics"].get(name) or {})

    def span(key: str) -> str:
        return " to ".join(str(stamp) for stamp in data.get(key, []))

    def execution(step: dict[str, Any]) -> str:
        return (
            f"execution {step['execution_id']} ({step['node']}, {step['state']}, "
            f"{step['started']} to {step['finished']})"
        )

    files = "".join(
        f"\n      {f['path']} sha256 {f['sha256'][:16]}" for f in data.get("source_files", [])
    )
    lines = [
        f"Model {found['model_name']} version {found['version']}: {found['status']}",
        f"  pushed: {found['pushed_at']} to {found['version_dir']}",
        f"  pipeline run: {found['pipeline_run_id']}",
        f"  model: artifact {found['model']['artifact_id']} at {found['model']['uri']}",
        f"  blessing: {'blessed' if blessing.get('blessed') else blessing.get('blessed')} "
        f"({blessing.get('uri')})",
        f"  metrics overall:     {metrics('overall')}",
        f"  metrics Credit Card: {metrics(CREDIT_CARD)}",
        f"  trainer: {execution(found['trainer'])}",
        f"  transform: {execution(found['transform'])}",
        f"  schema: sha256 {found['schema'].get('sha256')} ({found['schema'].get('uri')})",
        f"  drift gate: {found['drift_gate'].get('outcome')}"
        + (
            f" against version {found['drift_gate']['baseline_version']}"
            if found["drift_gate"].get("baseline_version")
            else ""
        ),
        f"  data: version {data.get('data_version')} from {data.get('source_uri')}{files}",
        f"    train: {data.get('train_rows')} rows, {span('train_time_range')}",
        f"    eval: {data.get('eval_rows')} rows, {span('eval_time_range')}",
        f"    freshness: newest training row {data.get('newest_training_row_age_days')} days old",
        "  code: " + (", ".join(f"{k} {v}" for k, v in code.items()) or "unknown"),
    ]
    return "\n".join(lines)


def format_data_lineage(found: dict[str, Any]) -> str:
    """Renders `data_lineage` for the terminal."""
    lines = [f"Data version {found['data_version']}: {len(found['models'])} model(s) trained on it"]
    for model in found["models"]:
        pushed = ", ".join(
            f"version {p['version']} ({p['status']}, pushed {p['pushed_at']})"
            for p in model["pushed_versions"]
        )
        lines.append(
            f"  model artifact {model['artifact_id']} at {model['uri']}: "
            + (f"pushed as {pushed}" if pushed else "not pushed")
        )
    return "\n".join(lines)
