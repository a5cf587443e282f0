"""The Trainer step's run_fn on Kubeflow when training runs as a TFJob: create it and wait.

`components.tfjob.launcher.run_fn` runs inside the KFP Trainer pod (TFX's Trainer executor,
so inputs, outputs and MLMD stay TFX's): it writes the resolved FnArgs next to the model run
output, creates a TFJob whose replicas run `model.trainer.replica` on them, waits for the
job's terminal condition, and leaves the Chief's export where TFX's executor checks for it.
"""

import json
import os
import re
import time
from collections.abc import Callable
from typing import Any

from absl import logging
from tfx import v1 as tfx

from components.tfjob import manifest
from model.trainer import replica

CUSTOM_CONFIG_KEY = "tfjob"
REPLICA_COMMAND = ("python", "-m", "model.trainer.replica", "--fn-args")
# Where Kubernetes mounts the pod's own namespace (every pod with a service account).
NAMESPACE_FILE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
POLL_S = 15.0


class TFJobFailedError(RuntimeError):
    """The TFJob ended Failed or did not finish in time."""


def job_name(model_run_dir: str) -> str:
    """A Kubernetes name unique per Trainer execution (from its model run URI)."""
    tail = re.sub(r"[^a-z0-9]+", "-", model_run_dir.lower()).strip("-")[-40:].strip("-")
    return f"trainer-{tail}"[:63].rstrip("-")


def wait_for_tfjob(
    get: Callable[[], dict[str, Any]],
    timeout_s: float,
    poll_s: float = POLL_S,
    sleep: Callable[[float], None] = time.sleep,
) -> str:
    """Polls a TFJob until it Succeeded or Failed.

    Args:
      get: Returns the TFJob object (the Kubernetes API's GET).
      timeout_s: How long to wait.
      poll_s: Seconds between polls.
      sleep: Sleep function.

    Returns:
      The Succeeded condition's message.

    Raises:
      TFJobFailedError: On Failed, or after timeout_s.
    """
    waited = 0.0
    while waited <= timeout_s:
        outcome, message = manifest.job_outcome(get())
        if outcome == manifest.SUCCEEDED:
            return message
        if outcome == manifest.FAILED:
            raise TFJobFailedError(f"TFJob failed: {message}")
        sleep(poll_s)
        waited += poll_s
    raise TFJobFailedError(f"TFJob did not finish within {timeout_s}s")


def run_fn(fn_args: tfx.components.FnArgs) -> None:
    """Trains through a TFJob (Chief + Workers) and returns once the Chief has exported.

    Args:
      fn_args: TFX Trainer arguments; `custom_config["tfjob"]` holds `TFJobParams.to_json()`.

    Raises:
      ValueError: If custom_config has no TFJob parameters.
      TFJobFailedError: If the job fails or times out.
    """
    from kubernetes import client, config  # the cluster client, only where a cluster is

    params_json = (fn_args.custom_config or {}).get(CUSTOM_CONFIG_KEY)
    if not params_json:
        raise ValueError(f"custom_config[{CUSTOM_CONFIG_KEY!r}] missing: compile with tfjob")
    params = manifest.TFJobParams.from_json(params_json)
    fn_args_path = os.path.join(fn_args.model_run_dir, "fn_args.json")
    import tensorflow as tf

    tf.io.gfile.makedirs(fn_args.model_run_dir)
    with tf.io.gfile.GFile(fn_args_path, "w") as f:
        json.dump(replica.fn_args_to_json(fn_args), f)
    with open(NAMESPACE_FILE) as f:
        namespace = f.read().strip()
    name = job_name(fn_args.model_run_dir)
    body = manifest.render_tfjob(name, namespace, params, [*REPLICA_COMMAND, fn_args_path])
    config.load_incluster_config()
    api = client.CustomObjectsApi()
    api.create_namespaced_custom_object(
        manifest.GROUP, manifest.VERSION, namespace, manifest.PLURAL, body
    )
    logging.info("Created TFJob %s/%s: 1 chief + %d workers", namespace, name, params.workers)
    message = wait_for_tfjob(
        lambda: api.get_namespaced_custom_object(
            manifest.GROUP, manifest.VERSION, namespace, manifest.PLURAL, name
        ),
        params.timeout_s,
    )
    logging.info("TFJob %s succeeded: %s", name, message)
