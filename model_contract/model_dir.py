"""Reading, pushing into and rolling back a TF Serving model directory `<base>/<model_name>`.

A version is a numeric child holding `saved_model.pb`; anything else is ignored (see
`model_contract.layout`). A push writes under a hidden staging name and then publishes it under
its number, so a reader never sees a half-written version; a rollback renames the newer
versions to `_rolled_back_<v>` so TF Serving's latest-version policy serves an older one.
"""

import dataclasses
import datetime
import json
import os
from collections.abc import Mapping
from typing import Any

from model_contract.filesystem import FileSystem, copy_tree, tree_files
from model_contract.layout import (
    MANIFEST_FILE,
    SAVED_MODEL_FILE,
    next_version,
    parse_version,
    rolled_back_name,
    staging_name,
    withdrawn_version,
)

PUSHED = "pushed"
ALREADY_SERVING = "already_serving"
# The manifest field that identifies the pushed model (the Trainer's Model artifact URI).
MODEL_URI_FIELD = "model_uri"


@dataclasses.dataclass(frozen=True)
class PushResult:
    """What `push_version` did.

    Attributes:
      outcome: `pushed`, or `already_serving` when the latest version is the same model.
      version: The version now holding the model.
      path: `<model_dir>/<version>`.
      manifest: That version's push manifest.
    """

    outcome: str
    version: int
    path: str
    manifest: Mapping[str, Any]


def _children(fs: FileSystem, model_dir: str) -> list[str]:
    if not fs.isdir(model_dir):
        return []
    return [child.rstrip("/") for child in fs.listdir(model_dir)]


def list_version_dirs(fs: FileSystem, model_dir: str) -> dict[int, str]:
    """Returns version -> directory for every complete version.

    Args:
      fs: The filesystem (`tf.io.gfile`).
      model_dir: `<base>/<model_name>`; may not exist yet.

    Returns:
      Numeric children holding `saved_model.pb`; staging, rolled-back and incomplete
      directories are left out. Empty when the directory is missing.
    """
    found = {}
    for name in _children(fs, model_dir):
        version = parse_version(name)
        path = os.path.join(model_dir, name)
        if version is not None and fs.exists(os.path.join(path, SAVED_MODEL_FILE)):
            found[version] = path
    return found


def list_versions(fs: FileSystem, model_dir: str) -> list[int]:
    """Returns the complete versions, ascending."""
    return sorted(list_version_dirs(fs, model_dir))


def latest_version(fs: FileSystem, model_dir: str) -> int | None:
    """Returns the highest complete version (the one TF Serving's default policy serves)."""
    versions = list_versions(fs, model_dir)
    return versions[-1] if versions else None


def read_manifest(fs: FileSystem, version_dir: str) -> dict[str, Any]:
    """Returns a version's push manifest, {} when it has none (e.g. copied by hand).

    Raises:
      ValueError: If the manifest is not a JSON object.
    """
    path = os.path.join(version_dir, MANIFEST_FILE)
    if not fs.exists(path):
        return {}
    with fs.GFile(path, "r") as f:
        manifest = json.load(f)
    if not isinstance(manifest, dict):
        raise ValueError(f"{path} must hold a JSON object, got {type(manifest).__name__}")
    return manifest


def _taken_versions(fs: FileSystem, model_dir: str) -> list[int]:
    taken = []
    for name in _children(fs, model_dir):
        version = parse_version(name)
        version = withdrawn_version(name) if version is None else version
        if version is not None:
            taken.append(version)
    return taken


def _publish(fs: FileSystem, staging: str, final: str) -> None:
    if fs.exists(final):
        raise FileExistsError(f"Cannot publish {staging}: {final} already exists")
    if "://" not in final or final.startswith("file://"):
        # One rename: atomic on a POSIX filesystem or PVC.
        fs.rename(staging, final, overwrite=False)
        return
    # Object stores have no directories and rename object by object: move saved_model.pb
    # last, so the version is complete (by the contract) only once every file is there.
    for rel in tree_files(fs, staging):
        target = os.path.join(final, rel)
        fs.makedirs(os.path.dirname(target))
        fs.rename(os.path.join(staging, rel), target, overwrite=False)
    fs.rmtree(staging)


def push_version(
    fs: FileSystem,
    model_dir: str,
    source_dir: str,
    manifest: Mapping[str, Any],
    *,
    now: float,
    token: str,
) -> PushResult:
    """Publishes a SavedModel as a new version, complete or not at all.

    Copies `source_dir` to `<model_dir>/.tmp-<version>-<token>` (non-numeric: TF Serving
    ignores it), writes `assets.extra/push_manifest.json` there, then renames it to
    `<model_dir>/<version>`. When the latest version already holds the same model (same
    `model_uri` in its manifest: a re-run re-blessing it), nothing is written.

    Args:
      fs: The filesystem (`tf.io.gfile`).
      model_dir: `<base>/<model_name>`; created if missing.
      source_dir: The SavedModel to push.
      manifest: Provenance; must have `model_uri`. `model_name`, `version` and `pushed_at`
        are added.
      now: Current Unix time (the version is Unix time, see `next_version`).
      token: Unique suffix of the staging name (e.g. a random hex string).

    Returns:
      The outcome, version, path and manifest.

    Raises:
      ValueError: If `manifest` has no `model_uri`.
      FileNotFoundError: If `source_dir` is not a directory or has no saved_model.pb.
    """
    model_uri = manifest.get(MODEL_URI_FIELD)
    if not model_uri:
        raise ValueError(f"The push manifest needs {MODEL_URI_FIELD!r}; got {dict(manifest)}")
    if not fs.exists(os.path.join(source_dir, SAVED_MODEL_FILE)):
        raise FileNotFoundError(f"{source_dir} is not a SavedModel: no {SAVED_MODEL_FILE}")
    latest = latest_version(fs, model_dir)
    if latest is not None:
        latest_dir = os.path.join(model_dir, str(latest))
        served = read_manifest(fs, latest_dir)
        if served.get(MODEL_URI_FIELD) == model_uri:
            return PushResult(ALREADY_SERVING, latest, latest_dir, served)

    version = next_version(_taken_versions(fs, model_dir), now)
    final = os.path.join(model_dir, str(version))
    staging = os.path.join(model_dir, staging_name(version, token))
    written = {
        "model_name": os.path.basename(model_dir.rstrip("/")),
        "version": version,
        "pushed_at": datetime.datetime.fromtimestamp(now, datetime.timezone.utc).isoformat(),
        **manifest,
    }
    try:
        copy_tree(fs, source_dir, staging)
        manifest_path = os.path.join(staging, MANIFEST_FILE)
        fs.makedirs(os.path.dirname(manifest_path))
        with fs.GFile(manifest_path, "w") as f:
            f.write(json.dumps(written, indent=2, sort_keys=True))
        _publish(fs, staging, final)
    except BaseException:
        # Re-raised: only the half-written staging copy is removed (it is not a version).
        if fs.exists(staging):
            fs.rmtree(staging)
        raise
    return PushResult(PUSHED, version, final, written)


def roll_back(fs: FileSystem, model_dir: str, to_version: int | None = None) -> list[int]:
    """Withdraws the newest versions so TF Serving's latest-version policy serves an older one.

    Withdrawn versions are renamed to `_rolled_back_<version>` (ignored by TF Serving, kept
    for forensics), never deleted; their numbers are never reused by `push_version`.

    Args:
      fs: The filesystem (`tf.io.gfile`).
      model_dir: `<base>/<model_name>`.
      to_version: Version to serve afterwards; None means the one before the latest.

    Returns:
      The withdrawn versions, ascending.

    Raises:
      ValueError: If there is nothing to roll back to, or `to_version` is not a version.
    """
    versions = list_versions(fs, model_dir)
    if to_version is None:
        if len(versions) < 2:
            raise ValueError(
                f"Cannot roll back {model_dir}: it holds versions {versions}; rolling back needs "
                "an earlier version to serve."
            )
        to_version = versions[-2]
    if to_version not in versions:
        raise ValueError(f"Version {to_version} is not in {model_dir}; versions are {versions}")
    withdrawn = [v for v in versions if v > to_version]
    for version in withdrawn:
        fs.rename(
            os.path.join(model_dir, str(version)),
            os.path.join(model_dir, rolled_back_name(version)),
            overwrite=False,
        )
    return withdrawn
