"""The TF Serving model directory layout: `<base>/<model_name>/<numeric version>/`.

TF Serving treats every numeric child of the model directory as a version and ignores the
rest, so hidden non-numeric names are used for work in progress and for rolled-back versions.
"""

import json
import os
from typing import Any

import tensorflow as tf

MANIFEST_FILE = os.path.join("assets.extra", "push_manifest.json")
ROLLED_BACK_PREFIX = "_rolled_back_"


def list_versions(model_dir: str) -> list[int]:
    """Returns the complete versions in a model directory, ascending.

    A version counts only when it is a numeric child holding `saved_model.pb`.

    Args:
      model_dir: `<serving_base>/<model_name>`; may not exist yet.

    Returns:
      Version numbers, ascending; empty when the directory is missing or has none.
    """
    if not tf.io.gfile.isdir(model_dir):
        return []
    versions = []
    for child in tf.io.gfile.listdir(model_dir):
        name = child.rstrip("/")
        if name.isdigit() and tf.io.gfile.exists(os.path.join(model_dir, name, "saved_model.pb")):
            versions.append(int(name))
    return sorted(versions)


def latest_version(model_dir: str) -> int | None:
    """Returns the highest complete version, or None."""
    versions = list_versions(model_dir)
    return versions[-1] if versions else None


def read_manifest(version_dir: str) -> dict[str, Any]:
    """Returns the push manifest of a version ({} when the version has none)."""
    path = os.path.join(version_dir, MANIFEST_FILE)
    if not tf.io.gfile.exists(path):
        return {}
    with tf.io.gfile.GFile(path) as f:
        return json.load(f)


def roll_back(model_dir: str, to_version: int | None = None) -> list[int]:
    """Withdraws the newest versions so TF Serving's latest-version policy serves an older one.

    Withdrawn versions are renamed to `_rolled_back_<version>` (ignored by TF Serving, kept
    for forensics), never deleted.

    Args:
      model_dir: `<serving_base>/<model_name>`.
      to_version: Version to serve afterwards; None means the one before the latest.

    Returns:
      The withdrawn versions.

    Raises:
      ValueError: If there is nothing to roll back to, or `to_version` is not a version.
    """
    versions = list_versions(model_dir)
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
        tf.io.gfile.rename(
            os.path.join(model_dir, str(version)),
            os.path.join(model_dir, f"{ROLLED_BACK_PREFIX}{version}"),
            overwrite=False,
        )
    return withdrawn
