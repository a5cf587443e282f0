"""Typed server settings: built once at the entry point and passed down."""

from __future__ import annotations

import dataclasses

from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from serving.batching import BatchingSettings

LATEST = "latest"
ALL = "all"
SPECIFIC = "specific"
VALIDATION_MODES = ("enforce", "log", "off")


@dataclasses.dataclass(frozen=True)
class VersionPolicy:
    """Which versions under the base path are served (TF Serving's ServableVersionPolicy).

    Attributes:
      kind: `latest`, `all` or `specific`.
      num_versions: For `latest`: how many of the highest versions.
      versions: For `specific`: the versions to serve.
    """

    kind: str = LATEST
    num_versions: int = 1
    versions: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in (LATEST, ALL, SPECIFIC):
            raise ValueError(f"Unknown version policy {self.kind!r}")
        if self.kind == LATEST and self.num_versions < 1:
            raise ValueError("latest version policy needs num_versions >= 1")
        if self.kind == SPECIFIC and not self.versions:
            raise ValueError("specific version policy needs at least one version")

    def select(self, available: list[int]) -> list[int]:
        """Returns the versions to serve among those on disk (ascending)."""
        ordered = sorted(available)
        if self.kind == ALL:
            return ordered
        if self.kind == SPECIFIC:
            return [v for v in ordered if v in self.versions]
        return ordered[-self.num_versions :]


@dataclasses.dataclass(frozen=True)
class ModelSettings:
    """One served model.

    Attributes:
      name: Model name in requests.
      base_path: Directory whose numeric children are versions (local path or any
        tf.io.gfile URL).
      version_policy: Which versions to serve.
      version_labels: Label (e.g. `stable`, `canary`) to version.
    """

    name: str
    base_path: str
    version_policy: VersionPolicy = VersionPolicy()
    version_labels: tuple[tuple[str, int], ...] = ()

    @property
    def labels(self) -> dict[str, int]:
        """Version labels as a dict."""
        return dict(self.version_labels)


@dataclasses.dataclass(frozen=True)
class TlsServerSettings:
    """gRPC TLS for the server.

    Attributes:
      cert_file: PEM server certificate chain.
      key_file: PEM private key.
      client_ca_file: PEM CA bundle; when set, clients must present a certificate it signed.
    """

    cert_file: str
    key_file: str
    client_ca_file: str | None = None


@dataclasses.dataclass(frozen=True)
class ServerSettings:
    """Everything the server needs, loaded once at the entry point.

    Attributes:
      models: Served models (from flags or the model config file).
      model_config_file: Text ModelServerConfig; re-read when it changes if
        `model_config_file_poll_s` > 0.
      host: Interface to bind (`0.0.0.0` in containers, `127.0.0.1` in tests).
      grpc_port: gRPC port (0 = any free port).
      rest_port: REST port (0 = any free port; None = no REST server).
      file_system_poll_s: Seconds between scans of the base paths for new versions.
      model_config_file_poll_s: Seconds between checks of the config file (0 = never).
      max_request_bytes: Largest accepted request body (gRPC message or REST body).
      grpc_max_workers: gRPC handler threads.
      schema_path: Curated schema for input validation (None = no validation).
      input_validation: `enforce` rejects violating requests, `log` only logs, `off` skips.
      batching: Server-side batching settings; None disables batching.
      warmup: Replay warm-up requests before a version becomes AVAILABLE.
      drain_timeout_s: How long shutdown waits for in-flight requests.
      tls: gRPC TLS; None = plaintext.
    """

    models: tuple[ModelSettings, ...] = ()
    model_config_file: str | None = None
    host: str = "0.0.0.0"
    grpc_port: int = 8500
    rest_port: int | None = 8501
    file_system_poll_s: float = 1.0
    model_config_file_poll_s: float = 0.0
    max_request_bytes: int = 64 * 1024 * 1024
    grpc_max_workers: int = 16
    schema_path: str | None = None
    input_validation: str = "enforce"
    batching: BatchingSettings | None = None
    warmup: bool = True
    drain_timeout_s: float = 10.0
    tls: TlsServerSettings | None = None

    def __post_init__(self) -> None:
        if self.input_validation not in VALIDATION_MODES:
            raise ValueError(f"input_validation must be one of {VALIDATION_MODES}")
        if not self.models and not self.model_config_file:
            raise ValueError("Give at least one model or a model config file")
        if self.max_request_bytes <= 0:
            raise ValueError("max_request_bytes must be positive")
        if self.file_system_poll_s <= 0:
            raise ValueError("file_system_poll_s must be positive")


def parse_model_config(text: str) -> tuple[ModelSettings, ...]:
    """Parses a text ModelServerConfig (TF Serving's `--model_config_file` format).

    Args:
      text: The file's contents, with a `model_config_list`.

    Returns:
      One ModelSettings per `config` entry.

    Raises:
      ValueError: If the text does not parse, uses an unsupported platform, or has
        duplicate model names.
    """
    config = model_server_config_pb2.ModelServerConfig()
    try:
        text_format.Parse(text, config)
    except text_format.ParseError as e:
        raise ValueError(f"Bad model config: {e}") from None
    if config.WhichOneof("config") != "model_config_list":
        raise ValueError("Model config must have a model_config_list")
    models = []
    for entry in config.model_config_list.config:
        if entry.model_platform not in ("", "tensorflow"):
            raise ValueError(f"Model {entry.name!r}: unsupported platform {entry.model_platform!r}")
        policy_proto = entry.model_version_policy
        kind = policy_proto.WhichOneof("policy_choice")
        if kind == "all":
            policy = VersionPolicy(ALL)
        elif kind == "specific":
            policy = VersionPolicy(SPECIFIC, versions=tuple(policy_proto.specific.versions))
        elif kind == "latest":
            policy = VersionPolicy(LATEST, num_versions=policy_proto.latest.num_versions or 1)
        else:
            policy = VersionPolicy()
        labels = tuple(sorted(entry.version_labels.items()))
        models.append(ModelSettings(entry.name, entry.base_path, policy, labels))
    names = [m.name for m in models]
    if len(set(names)) != len(names):
        raise ValueError(f"Duplicate model names in model config: {names}")
    return tuple(models)


def read_model_config(path: str) -> tuple[ModelSettings, ...]:
    """Reads and parses a model config file.

    Args:
      path: Text ModelServerConfig file.

    Returns:
      See `parse_model_config`.

    Raises:
      OSError: If the file cannot be read.
      ValueError: See `parse_model_config`.
    """
    with open(path, encoding="utf-8") as f:
        return parse_model_config(f.read())
