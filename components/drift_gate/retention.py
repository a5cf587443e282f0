"""Retention of DriftGate's statistics copies under `<model_dir>/.drift_baselines/`.

Every gate that passes keeps a copy of its train statistics (see `executor.keep_baseline_copy`),
also for models that are never pushed, so without retention the folder grows by one copy a run.
The rule is the Pusher's for versions (`model_contract.retire_old_versions`): the newest `keep`
copies stay, and so does every protected one (the copies of the versions still in the model
directory, which a rollback may serve again and the gate must then compare with).
"""

import os
from collections.abc import Iterable

import tensorflow as tf


def _modified_ns(path: str) -> int:
    try:
        return int(tf.io.gfile.stat(path).mtime_nsec)
    except tf.errors.NotFoundError:  # A copy without its file: oldest, first to go.
        return -1


def retire_baseline_copies(root: str, *, keep: int, protect: Iterable[str] = ()) -> list[str]:
    """Deletes all but the newest `keep` copies under `root`, never a protected one.

    Args:
      root: `<model_dir>/.drift_baselines`; may not exist.
      keep: Unprotected copies to keep (the newest, by their file's modification time); >= 1.
      protect: Copy folders (`<root>/<key>`) kept whatever their age.

    Returns:
      The deleted copy folders, sorted.

    Raises:
      ValueError: If `keep` < 1 (the copy the gate just wrote is among the newest).
    """
    if keep < 1:
        raise ValueError(f"keep must be >= 1 (the copy just written stays), got {keep}")
    if not tf.io.gfile.isdir(root):
        return []
    protected = {os.path.normpath(p) for p in protect}
    copies = [os.path.join(root, name.rstrip("/")) for name in tf.io.gfile.listdir(root)]
    # Half-written copies (`FeatureStats.pb.tmp-<pid>`) live inside a key folder: a folder is
    # aged by its copy's final file.
    dated = sorted(
        copies,
        key=lambda c: _modified_ns(os.path.join(c, "Split-train", "FeatureStats.pb")),
        reverse=True,
    )
    kept = set(dated[:keep]) | {c for c in copies if os.path.normpath(c) in protected}
    retired = sorted(c for c in copies if c not in kept)
    for copy in retired:
        tf.io.gfile.rmtree(copy)
    return retired
