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
from collections.abc import Iterable, Mapping
from typing import Any

from model_contract.filesystem import FileSystem, copy_tree, tree_files
from model_contract.layout import (
    MANIFEST_FILE,
    SAVED_MODEL_FILE,
    next_version,
    parse_version,
    rolled_back_name,
    staging_name,
    staging_version,
    withdrawn_version,
)

PUSHED = "pushed"
ALREADY_SERVING = "already_serving"
# A staging copy older than this (read from its name, see `layout.staging_version`) belongs
# to a push that died (killed between copy and rename, a full disk whose cleanup failed): no
# push of a SavedModel takes a day, so a younger one may be a concurrent push still writing.
DEFAULT_STAGING_MAX_AGE_S = 24 * 3600
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
      removed_staging: Staging copies of dead pushes deleted before this push.
      retired: Old versions deleted by retention after this push.
    """

    outcome: str
    version: int
    path: str
    manifest: Mapping[str, Any]
    removed_staging: tuple[str, ...] = ()
    retired: tuple[int, ...] = ()


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


def remove_stale_staging(
    fs: FileSystem, model_dir: str, *, now: float, max_age_s: float = DEFAULT_STAGING_MAX_AGE_S
) -> list[str]:
    """Deletes staging copies left by pushes that started more than `max_age_s` ago.

    A push that is killed between copy and rename leaves a full-size `.tmp-<version>-<token>`
    copy that TF Serving ignores and nothing else removes. Its age comes from its name (the
    version is the push's start time), never overstated, so a copy a concurrent push is still
    writing (younger than `max_age_s`) is left alone.

    Args:
      fs: The filesystem (`tf.io.gfile`).
      model_dir: `<base>/<model_name>`; may not exist.
      now: Current Unix time.
      max_age_s: Minimum age of a staging copy to delete; must be positive.

    Returns:
      The names deleted, sorted.

    Raises:
      ValueError: If `max_age_s` is not positive.
    """
    if max_age_s <= 0:
        raise ValueError(f"max_age_s must be > 0 (a concurrent push's copy), got {max_age_s}")
    removed = []
    for name in sorted(_children(fs, model_dir)):
        started = staging_version(name)
        if started is not None and now - started > max_age_s:
            fs.rmtree(os.path.join(model_dir, name))
            removed.append(name)
    return removed


def retire_old_versions(
    fs: FileSystem, model_dir: str, *, keep: int, protect: Iterable[int] = ()
) -> list[int]:
    """Deletes all but the newest `keep` complete versions, never a protected one.

    The latest version (what TF Serving's default policy serves) is always among the kept
    ones (`keep >= 1`); versions in `protect` (e.g. those a `specific` model-version policy or
    a version label names) are kept on top of the newest `keep`. Rolled-back and staging
    directories are not versions and are not counted or touched. Deleted numbers are never
    reused: a new version is always above the latest.

    Args:
      fs: The filesystem (`tf.io.gfile`).
      model_dir: `<base>/<model_name>`.
      keep: How many of the newest versions to keep; at least 1.
      protect: Versions to keep whatever their age.

    Returns:
      The deleted versions, ascending.

    Raises:
      ValueError: If `keep` < 1.
    """
    if keep < 1:
        raise ValueError(f"keep must be >= 1 (the served version is never deleted), got {keep}")
    versions = list_version_dirs(fs, model_dir)
    kept = set(sorted(versions)[-keep:]) | set(protect)
    retired = sorted(v for v in versions if v not in kept)
    for version in retired:
        fs.rmtree(versions[version])
    return retired


def push_version(
    fs: FileSystem,
    model_dir: str,
    source_dir: str,
    manifest: Mapping[str, Any],
    *,
    now: float,
    token: str,
    keep_versions: int | None = None,
    protect_versions: Iterable[int] = (),
    staging_max_age_s: float = DEFAULT_STAGING_MAX_AGE_S,
) -> PushResult:
    """Publishes a SavedModel as a new version, complete or not at all.

    Copies `source_dir` to `<model_dir>/.tmp-<version>-<token>` (non-numeric: TF Serving
    ignores it), writes `assets.extra/push_manifest.json` there, then renames it to
    `<model_dir>/<version>`. When the latest version already holds the same model (same
    `model_uri` in its manifest: a re-run re-blessing it), nothing is written.

    Before anything else, staging copies of pushes that died are removed
    (`remove_stale_staging`); after a new version is published, only the newest
    `keep_versions` (plus `protect_versions`) are kept (`retire_old_versions`).

    Args:
      fs: The filesystem (`tf.io.gfile`).
      model_dir: `<base>/<model_name>`; created if missing.
      source_dir: The SavedModel to push.
      manifest: Provenance; must have `model_uri`. `model_name`, `version` and `pushed_at`
        are added.
      now: Current Unix time (the version is Unix time, see `next_version`).
      token: Unique suffix of the staging name (e.g. a random hex string).
      keep_versions: Versions to keep after a push (>= 1); None keeps all.
      protect_versions: Versions never deleted by retention.
      staging_max_age_s: Age past which a staging copy is a dead push's leftover.

    Returns:
      The outcome, version, path, manifest, and what was cleaned up.

    Raises:
      ValueError: If `manifest` has no `model_uri`.
      FileNotFoundError: If `source_dir` is not a directory or has no saved_model.pb.
    """
    model_uri = manifest.get(MODEL_URI_FIELD)
    if not model_uri:
        raise ValueError(f"The push manifest needs {MODEL_URI_FIELD!r}; got {dict(manifest)}")
    if not fs.exists(os.path.join(source_dir, SAVED_MODEL_FILE)):
        raise FileNotFoundError(f"{source_dir} is not a SavedModel: no {SAVED_MODEL_FILE}")
    if keep_versions is not None and keep_versions < 1:
        raise ValueError(f"keep_versions must be >= 1 or None (keep all), got {keep_versions}")
    stale = remove_stale_staging(fs, model_dir, now=now, max_age_s=staging_max_age_s)
    latest = latest_version(fs, model_dir)
    if latest is not None:
        latest_dir = os.path.join(model_dir, str(latest))
        served = read_manifest(fs, latest_dir)
        if served.get(MODEL_URI_FIELD) == model_uri:
            return PushResult(ALREADY_SERVING, latest, latest_dir, served, tuple(stale))

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
    retired: list[int] = []
    if keep_versions is not None:
        retired = retire_old_versions(fs, model_dir, keep=keep_versions, protect=protect_versions)
    return PushResult(PUSHED, version, final, written, tuple(stale), tuple(retired))


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
      ValueError: If there is nothing to roll back to, `to_version` is not a version, or a
        withdrawn name is taken (then nothing is renamed).
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
    # Every target is checked before the first rename: a clash leaves nothing half done.
    taken = [
        os.path.join(model_dir, rolled_back_name(v))
        for v in withdrawn
        if fs.exists(os.path.join(model_dir, rolled_back_name(v)))
    ]
    if taken:
        raise ValueError(
            f"Cannot roll back {model_dir}: {', '.join(taken)} already exists (a version "
            "withdrawn before under the same number); move it aside first. Nothing was renamed."
        )
    for version in withdrawn:
        fs.rename(
            os.path.join(model_dir, str(version)),
            os.path.join(model_dir, rolled_back_name(version)),
            overwrite=False,
        )
    return withdrawn
