"""Typed, validated `kubeflow` environment config: image, storage, Kubernetes pools, resources."""

import dataclasses
import re
import typing

from pipeline.config import PipelineSettings, check_field, direct_runner_args, load

# Schemes the KFP v2 launcher can use as a pipeline root (it maps them to /gcs, /s3, /minio).
PIPELINE_ROOT_SCHEMES = ("gs://", "s3://", "minio://")
# Executors read exec-property paths (data, schema, serving base) with tf.io.gfile, which has
# no s3:// or minio:// filesystem in TF 2.16 without tensorflow-io: only GCS or a mounted path.
EXECUTOR_PATH_SCHEMES = ("gs://", "/")
TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
_IMAGE_RE = re.compile(r"^[a-z0-9][a-z0-9._/:-]*[a-z0-9](:[\w][\w.-]{0,127}|@sha256:[0-9a-f]{64})$")
_K8S_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_PIPELINE_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,127}$")


@dataclasses.dataclass(frozen=True)
class TrainerResources:
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
    accelerator_count: int = 1
    cpu_limit: float = 4.0
    memory_limit_gb: float = 16.0
    cpu_request: float = 2.0
    memory_request_gb: float = 8.0
    node_selector: tuple[str, ...] = ("pool=gpu",)
    tolerations: tuple[str, ...] = ("nvidia.com/gpu:NoSchedule",)

    def __post_init__(self) -> None:
        """Validates values, naming the field."""
        check_field(
            self.accelerator_count >= 0, "trainer.accelerator_count", ">= 0", self.accelerator_count
        )
        check_field(
            bool(self.accelerator_type) or self.accelerator_count == 0,
            "trainer.accelerator_type",
            "non-empty when accelerator_count > 0",
            self.accelerator_type,
        )
        for name in ("cpu_limit", "memory_limit_gb", "cpu_request", "memory_request_gb"):
            check_field(getattr(self, name) >= 0, f"trainer.{name}", ">= 0", getattr(self, name))
        parse_node_selector(self.node_selector, "trainer.node_selector")
        parse_tolerations(self.tolerations, "trainer.tolerations")


@dataclasses.dataclass(frozen=True)
class KubeflowConfig:
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
      beam_running_mode: Beam DirectRunner mode inside each step's pod.
      enable_cache: KFP caching of unchanged steps.
      cpu_node_selector: `label=value` pairs keeping every other step on the CPU pool.
      pvc_mounts: `pvc-name:/mount/path` volumes mounted into every step.
      trainer: Trainer resources and GPU pool placement.
      metadata_grpc_host: KFP's ML-Metadata gRPC service as steps reach it: DriftGate follows
        the served model's lineage there (KFP's default install: `metadata-grpc-service` in
        namespace `kubeflow`, the `metadata-grpc-configmap` values).
      metadata_grpc_port: Its port (default 8080).
    """

    settings: PipelineSettings = dataclasses.field(default_factory=PipelineSettings)
    image: str = "ghcr.io/example/tfx-taxi-kfp:0.1.0"
    pipeline_root: str = "minio://mlpipeline/v2/artifacts"
    source_uri: str = "/mnt/taxi/data/source"
    schema_path: str = "/pipeline/schemas/taxi/schema.pbtxt"
    serving_base: str = "/mnt/taxi/serving"
    display_name: str = ""
    beam_running_mode: str = "in_memory"
    enable_cache: bool = True
    cpu_node_selector: tuple[str, ...] = ("pool=cpu",)
    pvc_mounts: tuple[str, ...] = ("taxi-pipeline:/mnt/taxi",)
    trainer: TrainerResources = dataclasses.field(default_factory=TrainerResources)
    metadata_grpc_host: str = "metadata-grpc-service.kubeflow"
    metadata_grpc_port: int = 8080

    def __post_init__(self) -> None:
        """Validates values, naming the field."""
        check_field(
            bool(self.metadata_grpc_host.strip()),
            "metadata_grpc_host",
            "a host name (KFP's metadata-grpc-service)",
            self.metadata_grpc_host,
        )
        check_field(
            0 < self.metadata_grpc_port < 65536,
            "metadata_grpc_port",
            "a port in 1-65535",
            self.metadata_grpc_port,
        )
        check_field(
            bool(_PIPELINE_NAME_RE.match(self.settings.pipeline_name)),
            "settings.pipeline_name",
            "lowercase letters, digits and '-' (KubeflowV2DagRunner's rule)",
            self.settings.pipeline_name,
        )
        check_field(
            bool(_IMAGE_RE.match(self.image)) and not self.image.endswith(":latest"),
            "image",
            "repo/name:tag or repo/name@sha256:<64 hex>, not :latest",
            self.image,
        )
        check_field(
            self.pipeline_root.startswith(PIPELINE_ROOT_SCHEMES)
            and len(self.pipeline_root.split("://", 1)[1].strip("/")) > 0,
            "pipeline_root",
            f"a URI starting with one of {PIPELINE_ROOT_SCHEMES} and naming a bucket",
            self.pipeline_root,
        )
        for name in ("source_uri", "schema_path", "serving_base"):
            value = getattr(self, name)
            check_field(
                value.startswith(EXECUTOR_PATH_SCHEMES),
                name,
                "a gs:// URI or an absolute path (e.g. on a mounted PVC)",
                value,
            )
        check_field(
            self.beam_running_mode in ("in_memory", "multi_threading", "multi_processing"),
            "beam_running_mode",
            "in_memory, multi_threading or multi_processing",
            self.beam_running_mode,
        )
        parse_node_selector(self.cpu_node_selector, "cpu_node_selector")
        parse_pvc_mounts(self.pvc_mounts, "pvc_mounts")

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
        return direct_runner_args(self.beam_running_mode)


def parse_node_selector(pairs: tuple[str, ...], field: str) -> dict[str, str]:
    """Parses `label=value` pairs.

    Args:
      pairs: Entries such as `pool=gpu`.
      field: Config field name for messages.

    Returns:
      Label to value mapping.

    Raises:
      ConfigError: On an entry without `=` or with an empty label, naming the field.
    """
    result: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        check_field(bool(sep) and bool(key.strip()), field, "entries like label=value", pair)
        result[key.strip()] = value.strip()
    return result


def parse_tolerations(entries: tuple[str, ...], field: str) -> list[dict[str, str]]:
    """Parses kubectl-style taints (`key[=value]:Effect`) into Kubernetes tolerations.

    Args:
      entries: Entries such as `nvidia.com/gpu:NoSchedule` or `dedicated=gpu:NoSchedule`.
      field: Config field name for messages.

    Returns:
      Tolerations as dicts with key, operator (Exists without a value, Equal with one),
      value (when given) and effect.

    Raises:
      ConfigError: On a malformed entry, naming the field.
    """
    result = []
    for entry in entries:
        head, sep, effect = entry.rpartition(":")
        check_field(
            bool(sep) and effect in TAINT_EFFECTS,
            field,
            f"key[=value]:{'|'.join(TAINT_EFFECTS)}",
            entry,
        )
        key, has_value, value = head.partition("=")
        check_field(bool(key), field, "a non-empty taint key", entry)
        toleration = {"key": key, "operator": "Equal" if has_value else "Exists", "effect": effect}
        if has_value:
            toleration["value"] = value
        result.append(toleration)
    return result


def parse_pvc_mounts(entries: tuple[str, ...], field: str) -> list[tuple[str, str]]:
    """Parses `pvc-name:/mount/path` entries.

    Args:
      entries: Entries such as `taxi-pipeline:/mnt/taxi`.
      field: Config field name for messages.

    Returns:
      (claim name, mount path) pairs.

    Raises:
      ConfigError: On a malformed entry, naming the field.
    """
    result = []
    for entry in entries:
        name, sep, path = entry.partition(":")
        check_field(
            bool(sep) and bool(_K8S_NAME_RE.match(name)) and path.startswith("/"),
            field,
            "entries like pvc-name:/absolute/mount/path",
            entry,
        )
        result.append((name, path))
    return result


def load_kubeflow_config(
    config_file: str | None = None, overrides: list[str] | None = None
) -> KubeflowConfig:
    """Builds the `kubeflow` config (see `pipeline.config.load`), e.g. with overrides such as
    `trainer.accelerator_count=2`."""
    return typing.cast(KubeflowConfig, load(KubeflowConfig, config_file, overrides))
