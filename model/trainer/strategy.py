"""Chooses a tf.distribute strategy from the visible devices and the cluster spec."""

import json

import tensorflow as tf

DEFAULT = "default"
MIRRORED = "mirrored"
MULTI_WORKER_MIRRORED = "multi_worker_mirrored"


def choose_strategy_name(num_gpus: int, tf_config_json: str | None) -> str:
    """Decides which strategy fits the devices and cluster this process sees.

    Args:
      num_gpus: Number of GPUs visible to TensorFlow in this process.
      tf_config_json: The `TF_CONFIG` environment value, or None when unset.

    Returns:
      `multi_worker_mirrored` when TF_CONFIG names more than one worker (chief included),
      `mirrored` when at least one GPU is visible, else `default` (one device, no wrapping).

    Raises:
      ValueError: If TF_CONFIG is set but is not a JSON object with a `cluster` mapping.
    """
    if tf_config_json:
        try:
            tf_config = json.loads(tf_config_json)
            cluster = tf_config.get("cluster", {})
        except (ValueError, AttributeError) as e:
            raise ValueError(f"TF_CONFIG is not a JSON object: {tf_config_json!r}") from e
        if not isinstance(cluster, dict):
            raise ValueError(f"TF_CONFIG.cluster must be a mapping, got {cluster!r}")
        workers = len(cluster.get("worker", [])) + len(cluster.get("chief", []))
        if workers > 1:
            return MULTI_WORKER_MIRRORED
    if num_gpus > 0:
        return MIRRORED
    return DEFAULT


def cluster_size(tf_config_json: str | None) -> int:
    """Number of training processes (chief + workers) TF_CONFIG names; 1 without a cluster."""
    if not tf_config_json:
        return 1
    cluster = (json.loads(tf_config_json) or {}).get("cluster") or {}
    return max(1, len(cluster.get("chief", [])) + len(cluster.get("worker", [])))


def is_chief(tf_config_json: str | None) -> bool:
    """Whether this process writes the outputs: no cluster, the `chief` task, or worker 0 of
    a cluster without a chief (TF's MultiWorkerMirroredStrategy convention; TFX's Trainer
    executor decides the same way in `_is_chief`, tfx/components/trainer/executor.py).

    Args:
      tf_config_json: The `TF_CONFIG` environment value, or None when unset.

    Returns:
      True for the one process that exports.

    Raises:
      ValueError: If TF_CONFIG is set but is not a JSON object.
    """
    if not tf_config_json:
        return True
    try:
        tf_config = json.loads(tf_config_json)
        cluster = tf_config.get("cluster") or {}
        task = tf_config.get("task") or {}
    except (ValueError, AttributeError) as e:
        raise ValueError(f"TF_CONFIG is not a JSON object: {tf_config_json!r}") from e
    if not cluster:
        return True
    task_type, index = task.get("type"), int(task.get("index", 0))
    if task_type in ("chief", "master"):
        return index == 0
    return task_type == "worker" and index == 0 and "chief" not in cluster


def make_strategy(name: str) -> tf.distribute.Strategy:
    """Builds the strategy `choose_strategy_name` picked.

    Args:
      name: One of `default`, `mirrored`, `multi_worker_mirrored`.

    Returns:
      The strategy instance.

    Raises:
      ValueError: For an unknown name.
    """
    if name == MULTI_WORKER_MIRRORED:
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == MIRRORED:
        return tf.distribute.MirroredStrategy()
    if name == DEFAULT:
        return tf.distribute.get_strategy()
    raise ValueError(f"Unknown distribution strategy {name!r}")
