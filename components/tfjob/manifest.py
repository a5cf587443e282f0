"""Renders the Kubeflow Training Operator `TFJob` (kubeflow.org/v1) that trains the model.

Field names follow the CRD's Go types in kubeflow/training-operator (release-1.9,
`pkg/apis/kubeflow.org/v1/tensorflow_types.go`: `TFJobSpec.runPolicy`, `tfReplicaSpecs`
keyed by `Chief`/`Worker`, container name `tensorflow`; `common_types.go`: `ReplicaSpec`
`replicas`/`template`/`restartPolicy`, `RunPolicy` `cleanPodPolicy`/`backoffLimit`/
`activeDeadlineSeconds`, `JobCondition` types `Succeeded`/`Failed`). The operator sets
`TF_CONFIG` in every replica; MultiWorkerMirroredStrategy trains on the Chief and the Workers
and only the Chief exports (`model.trainer.strategy.is_chief`).
"""

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

API_VERSION = "kubeflow.org/v1"
KIND = "TFJob"
GROUP, VERSION, PLURAL = "kubeflow.org", "v1", "tfjobs"
# TFJobDefaultContainerName: the operator adds the `tfjob-port` (2222) to this container and
# TF_CONFIG to its environment; a differently named container gets neither.
CONTAINER_NAME = "tensorflow"
CHIEF, WORKER = "Chief", "Worker"
SUCCEEDED, FAILED = "Succeeded", "Failed"
GPU_RESOURCE = "nvidia.com/gpu"


@dataclasses.dataclass(frozen=True)
class TFJobParams:
    """What the TFJob runs and where (a plain, JSON-able record carried in custom_config).

    Attributes:
      image: Image of every replica (the pipeline image: TFX, TF and the project).
      workers: Worker replicas besides the Chief (each trains; the Chief also exports).
      gpus_per_replica: `nvidia.com/gpu` per replica (0 = CPU only).
      cpu: CPU request and limit per replica (0 = unset).
      memory_gb: Memory request and limit per replica in GB (0 = unset).
      node_selector: Node labels of the GPU pool.
      tolerations: Kubernetes tolerations (dicts with key, operator, value, effect).
      pvc_mounts: (claim, mount path) volumes, so replicas see the pipeline's files.
      backoff_limit: Retries of the whole job before it is Failed.
      timeout_s: `activeDeadlineSeconds` of the job, also how long the step waits.
    """

    image: str
    workers: int = 1
    gpus_per_replica: int = 0
    cpu: float = 0
    memory_gb: float = 0
    node_selector: Mapping[str, str] = dataclasses.field(default_factory=dict)
    tolerations: Sequence[Mapping[str, str]] = ()
    pvc_mounts: Sequence[tuple[str, str]] = ()
    backoff_limit: int = 0
    timeout_s: int = 6 * 3600

    def __post_init__(self) -> None:
        # One shape whatever the caller passed (lists from JSON, tuples from config).
        object.__setattr__(self, "node_selector", dict(self.node_selector))
        object.__setattr__(self, "tolerations", tuple(dict(t) for t in self.tolerations))
        object.__setattr__(self, "pvc_mounts", tuple(tuple(m) for m in self.pvc_mounts))
        if self.workers < 0 or self.gpus_per_replica < 0 or self.timeout_s <= 0:
            raise ValueError(
                "TFJob workers and gpus_per_replica must be >= 0 and timeout_s > 0, got "
                f"{self.workers}, {self.gpus_per_replica}, {self.timeout_s}"
            )

    def to_json(self) -> dict[str, Any]:
        """A JSON-able dict (for the Trainer's custom_config)."""
        values = dataclasses.asdict(self)
        values["node_selector"] = dict(self.node_selector)
        values["tolerations"] = [dict(t) for t in self.tolerations]
        values["pvc_mounts"] = [list(m) for m in self.pvc_mounts]
        return values

    @classmethod
    def from_json(cls, values: Mapping[str, Any]) -> "TFJobParams":
        """Reads `to_json`'s dict back."""
        return cls(**values)


def _quantity(value: float, unit: str = "") -> str:
    return f"{value:g}{unit}"


def _pod_template(params: TFJobParams, command: Sequence[str]) -> dict[str, Any]:
    resources: dict[str, dict[str, str]] = {}
    limits: dict[str, str] = {}
    if params.cpu:
        limits["cpu"] = _quantity(params.cpu)
    if params.memory_gb:
        limits["memory"] = _quantity(params.memory_gb, "G")
    if limits:
        resources["requests"] = dict(limits)
    if params.gpus_per_replica:
        limits[GPU_RESOURCE] = str(params.gpus_per_replica)
    if limits:
        resources["limits"] = limits
    container: dict[str, Any] = {
        "name": CONTAINER_NAME,
        "image": params.image,
        "command": list(command),
        "resources": resources,
    }
    spec: dict[str, Any] = {"containers": [container]}
    if params.pvc_mounts:
        volumes = [(f"pvc-{i}", claim, path) for i, (claim, path) in enumerate(params.pvc_mounts)]
        container["volumeMounts"] = [{"name": n, "mountPath": path} for n, _, path in volumes]
        spec["volumes"] = [
            {"name": n, "persistentVolumeClaim": {"claimName": claim}} for n, claim, _ in volumes
        ]
    if params.node_selector:
        spec["nodeSelector"] = dict(params.node_selector)
    if params.tolerations:
        spec["tolerations"] = [dict(t) for t in params.tolerations]
    return {"spec": spec}


def render_tfjob(
    name: str, namespace: str, params: TFJobParams, command: Sequence[str]
) -> dict[str, Any]:
    """Builds the TFJob: one Chief and `params.workers` Workers running `command`.

    Args:
      name: TFJob name (a Kubernetes name).
      namespace: Namespace to create it in.
      params: Image, replicas, resources, placement.
      command: The replicas' command (every replica runs the same; TF_CONFIG tells them
        apart).

    Returns:
      The manifest, as the Kubernetes API takes it.
    """
    template = _pod_template(params, command)
    replica_specs: dict[str, Any] = {
        # restartPolicy Never: a restarted replica cannot rejoin MultiWorkerMirroredStrategy's
        # collectives mid-run; the whole job is retried instead (backoffLimit).
        CHIEF: {"replicas": 1, "restartPolicy": "Never", "template": template},
    }
    if params.workers:
        replica_specs[WORKER] = {
            "replicas": params.workers,
            "restartPolicy": "Never",
            "template": template,
        }
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "runPolicy": {
                "cleanPodPolicy": "Running",
                "backoffLimit": params.backoff_limit,
                "activeDeadlineSeconds": params.timeout_s,
            },
            "tfReplicaSpecs": replica_specs,
        },
    }


def job_outcome(tfjob: Mapping[str, Any]) -> tuple[str | None, str]:
    """Reads a TFJob's terminal condition from its status.

    Args:
      tfjob: The TFJob object as the API returns it.

    Returns:
      (`Succeeded`, `Failed` or None while running, the condition's message).
    """
    for condition in (tfjob.get("status") or {}).get("conditions") or []:
        if condition.get("type") in (SUCCEEDED, FAILED) and condition.get("status") == "True":
            return condition["type"], condition.get("message", "")
    return None, ""
