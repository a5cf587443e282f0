"""Typed, validated `kubeflow` environment config: image, storage, Kubernetes pools, resources."""

import dataclasses
import re
from collections.abc import Callable
from typing import Annotated, Any, NamedTuple

import pydantic.dataclasses
from pydantic import BeforeValidator, Field

from pipeline.beam import REMOTE_RUNNERS, BeamSettings, beam_pipeline_args
from pipeline.config import PipelineSettings, load
from typed_config import CONFIG, Settings, check_field

# Schemes the KFP v2 launcher can use as a pipeline root (it maps them to /gcs, /s3, /minio).
PIPELINE_ROOT_SCHEMES = ("gs://", "s3://", "minio://")
# Executors read exec-property paths (data, schema, serving base) with tf.io.gfile, which has
# no s3:// or minio:// filesystem in TF 2.16 without tensorflow-io: only GCS or a mounted path.
EXECUTOR_PATH_SCHEMES = ("gs://", "/")
TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
_IMAGE_RE = re.compile(r"^[a-z0-9][a-z0-9._/:-]*[a-z0-9](:[\w][\w.-]{0,127}|@sha256:[0-9a-f]{64})$")
_K8S_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_PIPELINE_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,127}$")
_NonNegative = Annotated[float, Field(ge=0)]


class NodeLabel(NamedTuple):
    """One `label=value` node-selector entry."""

    label: str
    value: str


class Toleration(NamedTuple):
    """A Kubernetes toleration, from kubectl's taint syntax `key[=value]:Effect`."""

    key: str
    operator: str
    effect: str
    value: str | None = None

    def to_kubernetes(self) -> dict[str, str]:
        """The toleration as Kubernetes writes it (`value` only with operator Equal)."""
        result = {"key": self.key, "operator": self.operator, "effect": self.effect}
        if self.value is not None:
            result["value"] = self.value
        return result


class PvcMount(NamedTuple):
    """A `pvc-name:/mount/path` volume."""

    claim: str
    path: str


def parse_node_label(entry: str) -> NodeLabel:
    """Parses one `label=value` entry.

    Raises:
      ValueError: On an entry without `=` or with an empty label (pydantic names the field).
    """
    key, sep, value = entry.partition("=")
    if not (sep and key.strip()):
        raise ValueError(f"expected entries like label=value, got {entry!r}")
    return NodeLabel(key.strip(), value.strip())


def parse_toleration(entry: str) -> Toleration:
    """Parses a kubectl-style taint (`key[=value]:Effect`) into the toleration matching it:
    operator Exists without a value, Equal with one.

    Raises:
      ValueError: On a malformed entry (pydantic names the field).
    """
    head, sep, effect = entry.rpartition(":")
    if not (sep and effect in TAINT_EFFECTS):
        raise ValueError(f"expected key[=value]:{'|'.join(TAINT_EFFECTS)}, got {entry!r}")
    key, has_value, value = head.partition("=")
    if not key:
        raise ValueError(f"expected a non-empty taint key, got {entry!r}")
    if has_value:
        return Toleration(key, "Equal", effect, value)
    return Toleration(key, "Exists", effect)


def parse_pvc_mount(entry: str) -> PvcMount:
    """Parses one `pvc-name:/mount/path` entry.

    Raises:
      ValueError: On a malformed entry (pydantic names the field).
    """
    name, sep, path = entry.partition(":")
    if not (sep and _K8S_NAME_RE.match(name) and path.startswith("/")):
        raise ValueError(f"expected entries like pvc-name:/absolute/mount/path, got {entry!r}")
    return PvcMount(name, path)


def _parsed(parse: Callable[[str], Any]) -> BeforeValidator:
    """Parses each text entry once, into the typed entry later code uses as it is.

    `a,b` from a command line arrives as text, a JSON list as a list; entries already typed
    (a re-validation by `dataclasses.replace`) pass unchanged.
    """

    def validate(value: Any) -> Any:
        if isinstance(value, str):
            value = [item.strip() for item in value.split(",") if item.strip()]
        if not isinstance(value, (list, tuple)):
            return value
        return tuple(parse(item) if isinstance(item, str) else item for item in value)

    return BeforeValidator(validate)


# Config fields are written as text entries (`pool=gpu`, `nvidia.com/gpu:NoSchedule`,
# `claim:/path`) and held parsed.
NodeSelector = Annotated[tuple[NodeLabel, ...], _parsed(parse_node_label)]
Tolerations = Annotated[tuple[Toleration, ...], _parsed(parse_toleration)]
PvcMounts = Annotated[tuple[PvcMount, ...], _parsed(parse_pvc_mount)]


@pydantic.dataclasses.dataclass(frozen=True, config=CONFIG)
class TrainerResources(Settings):
    """Resources and placement of the Trainer step.

    Attributes:
      accelerator_type: `nvidia.com/gpu` (the Kubernetes resource name open-source KFP
        requests) or a Vertex AI name such as `NVIDIA_TESLA_T4`; empty = no accelerator.
      accelerator_count: Accelerators per Trainer pod (0 = none).
      cpu_limit: vCPU limit (0 = unset).
      memory_limit_gb: Memory limit in GB (0 = unset).
      cpu_request: vCPU request (0 = unset).
      memory_request_gb: Memory request in GB (0 = unset).
      node_selector: `label=value` pairs selecting the GPU node pool.
      tolerations: Taints tolerated, kubectl syntax `key[=value]:Effect`.
    """

    accelerator_type: str = "nvidia.com/gpu"
    accelerator_count: Annotated[int, Field(ge=0)] = 1
    cpu_limit: _NonNegative = 4.0
    memory_limit_gb: _NonNegative = 16.0
    cpu_request: _NonNegative = 2.0
    memory_request_gb: _NonNegative = 8.0
    node_selector: NodeSelector = (NodeLabel("pool", "gpu"),)
    tolerations: Tolerations = (Toleration("nvidia.com/gpu", "Exists", "NoSchedule"),)

    @pydantic.model_validator(mode="after")
    def _check_accelerator(self) -> "TrainerResources":
        check_field(
            bool(self.accelerator_type) or self.accelerator_count == 0,
            "accelerator_type",
            "non-empty when accelerator_count > 0",
            self.accelerator_type,
        )
        return self


@pydantic.dataclasses.dataclass(frozen=True, config=CONFIG)
class TFJobSettings(Settings):
    """The optional distributed Trainer: a Kubeflow Training Operator TFJob (kubeflow.org/v1).

    When enabled, the KFP Trainer step runs `components.tfjob.launcher.run_fn` on the CPU pool:
    it creates a TFJob (1 Chief + `workers` Workers, MultiWorkerMirroredStrategy) running the
    project's run_fn and waits for it. Needs the Training Operator in the cluster and RBAC for
    the pipeline's service account to create and get `tfjobs`.

    Attributes:
      enabled: Train through a TFJob instead of inside the Trainer step's pod.
      workers: Worker replicas besides the Chief.
      gpus_per_replica: `nvidia.com/gpu` per replica.
      cpu: CPU request/limit per replica (0 = unset).
      memory_gb: Memory request/limit per replica in GB (0 = unset).
      node_selector: `label=value` pairs selecting the replicas' node pool.
      tolerations: Taints the replicas tolerate, `key[=value]:Effect`.
      image: Replica image (empty = the pipeline image).
      backoff_limit: Retries of the whole job.
      timeout_s: The job's activeDeadlineSeconds, and how long the step waits.
    """

    enabled: bool = False
    workers: Annotated[int, Field(ge=0)] = 1
    gpus_per_replica: Annotated[int, Field(ge=0)] = 1
    cpu: _NonNegative = 4.0
    memory_gb: _NonNegative = 16.0
    node_selector: NodeSelector = (NodeLabel("pool", "gpu"),)
    tolerations: Tolerations = (Toleration("nvidia.com/gpu", "Exists", "NoSchedule"),)
    image: str = ""
    backoff_limit: Annotated[int, Field(ge=0)] = 0
    timeout_s: Annotated[int, Field(ge=60)] = 6 * 3600

    @pydantic.field_validator("image")
    @classmethod
    def _check_image(cls, value: str) -> str:
        if value and (not _IMAGE_RE.match(value) or value.endswith(":latest")):
            raise ValueError("expected repo/name:tag or repo/name@sha256:<64 hex>, not :latest")
        return value


@pydantic.dataclasses.dataclass(frozen=True, config=CONFIG)
class KubeflowConfig(Settings):
    """The `kubeflow` environment: where and how the compiled spec runs on open-source KFP v2.

    Attributes:
      settings: What the pipeline does (shared with the local environment).
      image: Pipeline image by tag (`repo/name:tag`) or digest (`repo/name@sha256:...`).
      pipeline_root: Artifact root: `gs://`, `s3://` or `minio://` (what the KFP launcher
        supports; a PVC path cannot be a pipeline root there).
      source_uri: Source CSV file or directory as the steps see it: `gs://` or a path on a
        mounted PVC. Also the default of the `source_uri` pipeline parameter.
      schema_path: Curated schema file as the executors see it (default: inside the image).
      serving_base: Directory the Pusher writes `<model_name>/<version>` to (`gs://` or a
        PVC path shared with TF Serving).
      display_name: Pipeline name in the KFP UI (empty = settings.pipeline_name).
      beam: Beam runner of the Beam steps (see `pipeline.beam.BeamSettings`): DirectRunner
        inside each step's pod, or a Flink/Spark job server, Dataflow, any Beam job service.
        The compiler never sees the data: `beam.data_bytes` stands for its size.
      tfjob: Optional distributed Trainer as a Kubeflow Training Operator TFJob.
      enable_cache: KFP caching of unchanged steps.
      cpu_node_selector: `label=value` pairs keeping every other step on the CPU pool.
      pvc_mounts: `pvc-name:/mount/path` volumes mounted into every step.
      trainer: Trainer resources and GPU pool placement.
      metadata_grpc_host: KFP's ML-Metadata gRPC service as steps reach it: DriftGate follows
        the served model's lineage there (KFP's default install: `metadata-grpc-service` in
        namespace `kubeflow`, the `metadata-grpc-configmap` values).
      metadata_grpc_port: Its port (default 8080).
      emulated_metadata_sqlite: Emulated backend only (`devtools/kfp_backend`, which has no
        gRPC service): the ML-Metadata SQLite file as steps see it, which DriftGate then reads
        instead of `metadata_grpc_host`. Empty (the default) on a cluster.
    """

    settings: PipelineSettings = dataclasses.field(default_factory=PipelineSettings)
    image: str = "ghcr.io/example/tfx-taxi-kfp:0.1.0"
    pipeline_root: str = "minio://mlpipeline/v2/artifacts"
    source_uri: str = "/mnt/taxi/data/source"
    schema_path: str = "/pipeline/schemas/taxi/schema.pbtxt"
    serving_base: str = "/mnt/taxi/serving"
    display_name: str = ""
    beam: BeamSettings = dataclasses.field(default_factory=BeamSettings)
    enable_cache: bool = True
    cpu_node_selector: NodeSelector = (NodeLabel("pool", "cpu"),)
    pvc_mounts: PvcMounts = (PvcMount("taxi-pipeline", "/mnt/taxi"),)
    trainer: TrainerResources = dataclasses.field(default_factory=TrainerResources)
    metadata_grpc_host: Annotated[str, Field(min_length=1, pattern=r"\S")] = (
        "metadata-grpc-service.kubeflow"
    )
    metadata_grpc_port: Annotated[int, Field(gt=0, lt=65536)] = 8080
    emulated_metadata_sqlite: str = ""
    tfjob: TFJobSettings = dataclasses.field(default_factory=TFJobSettings)

    @pydantic.field_validator("settings")
    @classmethod
    def _check_pipeline_name(cls, value: PipelineSettings) -> PipelineSettings:
        check_field(
            bool(_PIPELINE_NAME_RE.match(value.pipeline_name)),
            "pipeline_name",
            "lowercase letters, digits and '-' (KubeflowV2DagRunner's rule)",
            value.pipeline_name,
        )
        return value

    @pydantic.field_validator("image")
    @classmethod
    def _check_image(cls, value: str) -> str:
        if not _IMAGE_RE.match(value) or value.endswith(":latest"):
            raise ValueError("expected repo/name:tag or repo/name@sha256:<64 hex>, not :latest")
        return value

    @pydantic.field_validator("pipeline_root")
    @classmethod
    def _check_pipeline_root(cls, value: str) -> str:
        if not value.startswith(PIPELINE_ROOT_SCHEMES) or not value.split("://", 1)[1].strip("/"):
            raise ValueError(
                f"expected a URI starting with one of {PIPELINE_ROOT_SCHEMES} and naming a bucket"
            )
        return value

    @pydantic.field_validator("source_uri", "schema_path", "serving_base")
    @classmethod
    def _check_executor_path(cls, value: str) -> str:
        if not value.startswith(EXECUTOR_PATH_SCHEMES):
            raise ValueError("expected a gs:// URI or an absolute path (e.g. on a mounted PVC)")
        return value

    @pydantic.field_validator("emulated_metadata_sqlite")
    @classmethod
    def _check_emulated_metadata_sqlite(cls, value: str) -> str:
        if value and not value.startswith("/"):
            raise ValueError("expected an absolute path inside the step, or empty")
        return value

    @pydantic.model_validator(mode="after")
    def _check_dataflow_paths(self) -> "KubeflowConfig":
        # Dataflow workers run outside the cluster: they can reach GCS, not the PVC or MinIO
        # behind the KFP launcher's local paths.
        if self.beam.runner == "dataflow":
            for field in ("pipeline_root", "source_uri"):
                value = getattr(self, field)
                check_field(
                    value.startswith("gs://"), field, "a gs:// URI with beam.runner=dataflow", value
                )
        return self

    @property
    def pipeline_display_name(self) -> str:
        """Name shown in the KFP UI."""
        return self.display_name or self.settings.pipeline_name

    @property
    def model_dir(self) -> str:
        """`<serving_base>/<model_name>`: where the Pusher writes versions."""
        return f"{self.serving_base.rstrip('/')}/{self.settings.model_name}"

    @property
    def beam_pipeline_args(self) -> list[str]:
        """Beam arguments of the steps' own Beam jobs."""
        beam = self.beam
        if beam.runner in REMOTE_RUNNERS and not (beam.sdk_container_image or beam.setup_file):
            # The workers run the pipeline image: it has TFX and the project installed.
            beam = dataclasses.replace(beam, sdk_container_image=self.image)
        return beam_pipeline_args(beam)


def load_kubeflow_config(
    config_file: str | None = None, overrides: list[str] | None = None
) -> KubeflowConfig:
    """Builds the `kubeflow` config (see `pipeline.config.load`), e.g. with overrides such as
    `trainer.accelerator_count=2`."""
    return load(KubeflowConfig, config_file, overrides)
