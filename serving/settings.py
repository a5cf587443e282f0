"""Typed server settings: built once at the entry point and passed down."""

from __future__ import annotations

import typing
from typing import Annotated

import pydantic.dataclasses
from google.protobuf import text_format
from pydantic import Field
from tensorflow_serving.config import model_server_config_pb2

from serving.tracing import TracingSettings
from typed_config import CONFIG, Settings, check_field

VersionPolicyKind = typing.Literal["latest", "all", "specific"]
LATEST: VersionPolicyKind = "latest"
ALL: VersionPolicyKind = "all"
SPECIFIC: VersionPolicyKind = "specific"
InputValidation = typing.Literal["enforce", "log", "off"]
VALIDATION_MODES: tuple[InputValidation, ...] = typing.get_args(InputValidation)
# `service.name` of the server's spans when the tracing settings name none.
SERVICE_NAME = "tfx-taxi-serving"
# Share of the server's new traces recorded when the tracing settings give none: a recorded
# span costs the gRPC Predict ~0.3-0.4 ms of server CPU (`make serving-bench`, `--layers`);
# sampled like the request log (RequestLogSettings.sampling_rate). Callers' sampled
# traceparents are always followed.
TRACE_SAMPLING_RATIO = 0.01
_Port = Annotated[int, Field(ge=0, le=65535)]


@pydantic.dataclasses.dataclass(frozen=True, config=CONFIG)
class VersionPolicy(Settings):
    """Which versions under the base path are served (TF Serving's ServableVersionPolicy).

    Attributes:
      kind: `latest`, `all` or `specific`.
      num_versions: For `latest`: how many of the highest versions.
      versions: For `specific`: the versions to serve.
    """

    kind: VersionPolicyKind = LATEST
    num_versions: Annotated[int, Field(ge=1)] = 1
    versions: tuple[Annotated[int, Field(ge=0)], ...] = ()

    @pydantic.model_validator(mode="after")
    def _check_versions(self) -> VersionPolicy:
        check_field(
            self.kind != SPECIFIC or bool(self.versions),
            "versions",
            "at least one version for the specific policy",
            self.versions,
        )
        return self

    def select(self, available: list[int]) -> list[int]:
        """Returns the versions to serve among those on disk (ascending)."""
        ordered = sorted(available)
        if self.kind == ALL:
            return ordered
        if self.kind == SPECIFIC:
            return [v for v in ordered if v in self.versions]
        return ordered[-self.num_versions :]


@pydantic.dataclasses.dataclass(frozen=True, config=CONFIG)
class ModelSettings(Settings):
    """One served model.

    Attributes:
      name: Model name in requests.
      base_path: Directory whose numeric children are versions (local path or any
        tf.io.gfile URL).
      version_policy: Which versions to serve.
      version_labels: Label (e.g. `stable`, `canary`) to version.
    """

    name: Annotated[str, Field(min_length=1)]
    base_path: Annotated[str, Field(min_length=1)]
    version_policy: VersionPolicy = VersionPolicy()
    version_labels: tuple[tuple[str, int], ...] = ()

    @pydantic.field_validator("name")
    @classmethod
    def _check_name(cls, name: str) -> str:
        # A name from argv can hold lone surrogates (undecodable bytes); it becomes a metric
        # label and a log field, which must be valid UTF-8.
        try:
            name.encode("utf-8")
        except UnicodeEncodeError:
            check_field(False, "", "a model name that is valid UTF-8", name)
        return name

    @property
    def labels(self) -> dict[str, int]:
        """Version labels as a dict."""
        return dict(self.version_labels)


@pydantic.dataclasses.dataclass(frozen=True, config=CONFIG)
class TlsServerSettings(Settings):
    """TLS for the server (gRPC and REST).

    Attributes:
      cert_file: PEM server certificate chain.
      key_file: PEM private key.
      client_ca_file: PEM CA bundle; when set, clients must present a certificate it signed.

    The same files secure gRPC and REST (HTTPS), so neither API is left in plaintext.
    """

    cert_file: Annotated[str, Field(min_length=1)]
    key_file: Annotated[str, Field(min_length=1)]
    client_ca_file: str | None = None


@pydantic.dataclasses.dataclass(frozen=True, config=CONFIG)
class BatchingSettings(Settings):
    """Server-side batching.

    Attributes:
      max_batch_size: Most rows (first-dimension entries) in one merged call.
      batch_timeout_s: Longest a request waits for others to join its batch.
      max_enqueued_batches: Requests queued per signature before new ones are refused.
    """

    # TF Serving's defaults when --enable_batching has no parameters file: BasicBatchScheduler's
    # Options (tensorflow/core/kernels/batching_util/basic_batch_scheduler.h): 1000 rows, no
    # wait (a batch forms from what queued up while the previous call ran).
    max_batch_size: Annotated[int, Field(ge=1)] = 1000
    batch_timeout_s: Annotated[float, Field(ge=0)] = 0.0
    max_enqueued_batches: Annotated[int, Field(ge=1)] = 1000


@pydantic.dataclasses.dataclass(frozen=True, config=CONFIG)
class RequestLogSettings(Settings):
    """Sampled request logging (TF Serving's `logging_config`: `log_collector_config` and
    `sampling_config`), written as PredictionLog records to rotating TFRecord files.

    Attributes:
      directory: Folder of the log files (created if absent).
      sampling_rate: Fraction of answered requests logged, in [0, 1].
      filename_prefix: File names are `<prefix>.<start time ms>.<seq>.tfrecord`.
      max_file_bytes: A file is closed and a new one started before it would exceed this.
      max_total_bytes: Oldest files are deleted to keep the folder under this.
      queue_size: Sampled requests waiting for the writer; when full, new ones are dropped.
    """

    directory: Annotated[str, Field(min_length=1)]
    sampling_rate: Annotated[float, Field(ge=0.0, le=1.0)] = 0.01
    filename_prefix: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]+$")] = "prediction_log"
    max_file_bytes: Annotated[int, Field(ge=1024)] = 64 * 1024 * 1024
    max_total_bytes: Annotated[int, Field(ge=1024)] = 1024 * 1024 * 1024
    queue_size: Annotated[int, Field(ge=1)] = 1000

    @pydantic.model_validator(mode="after")
    def _check_sizes(self) -> RequestLogSettings:
        check_field(
            self.max_file_bytes <= self.max_total_bytes,
            "max_file_bytes",
            f"at most max_total_bytes ({self.max_total_bytes})",
            self.max_file_bytes,
        )
        return self


@pydantic.dataclasses.dataclass(frozen=True, config=CONFIG)
class ServerSettings(Settings):
    """Everything the server needs, loaded once at the entry point.

    Attributes:
      models: Served models (from flags or the model config file).
      model_config_file: Text ModelServerConfig; re-read when it changes if
        `model_config_file_poll_s` > 0.
      host: Interface to bind (`127.0.0.1` by default; the manifests pass `0.0.0.0`).
      grpc_port: gRPC port (0 = any free port).
      rest_port: REST port (0 = any free port; None = no REST server).
      file_system_poll_s: Seconds between scans of the base paths for new versions.
      model_config_file_poll_s: Seconds between checks of the config file (0 = never).
      max_request_bytes: Largest accepted request body (gRPC message or REST body).
      grpc_max_workers: gRPC handler threads.
      grpc_max_concurrent_rpcs: gRPC calls in progress (stalled ones included) beyond which
        new calls get RESOURCE_EXHAUSTED at once instead of queueing for a thread; None =
        three quarters of `grpc_max_workers`, so threads stay free for health checks.
      grpc_max_streams_per_connection: gRPC streams one connection may have open at once
        (HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS), below `grpc_max_concurrent_rpcs` so that
        one client cannot take every slot. Calls a client sends beyond it on one channel,
        and now and then at it (a new stream arriving before the last one's slot is freed),
        are refused with RST_STREAM REFUSED_STREAM: UNAVAILABLE, which gRPC's retry policy
        retries (this project's client does by default); keep a channel's concurrency well
        below it (open more channels) or raise it. With 32, a client holding 48 stalled streams
        still shut others out (`tests/serving/test_abuse.py`).
      grpc_max_connection_age_s: A gRPC connection is asked to close (GOAWAY) after this age;
        clients reconnect for later calls.
      grpc_max_connection_age_grace_s: Then its streams still open get this long before the
        connection is closed and they are cancelled: with the age, the longest a stalled
        stream (request never sent) holds a thread.
      grpc_max_connection_idle_s: A gRPC connection without streams this long is closed.
      max_request_elements: Most tensor elements in one request (all inputs, after
        broadcasting a single value to the declared shape), checked before any allocation.
      max_examples_per_request: Most examples (first dimension of the inputs, or serialized
        tf.Examples) in one request.
      max_num_load_retries: Loads retried after a version fails to load (TF Serving's flag).
      load_retry_interval_s: Wait before the first retry; doubled after each failed retry.
      schema_path: Curated schema for input validation (None = no validation).
      input_validation: `enforce` rejects violating requests, `log` only logs, `off` skips.
      batching: Server-side batching settings; None disables batching.
      warmup: Replay warm-up requests before a version becomes AVAILABLE.
      tf_serving_health_names: Also report TF Serving's grpc.health.v1 names (ModelService,
        PredictionService), as `--enable_grpc_healthcheck_service` does.
      drain_timeout_s: How long shutdown waits for in-flight requests.
      tls: gRPC TLS; None = plaintext.
      tracing: OpenTelemetry spans per request (exporter `none` by default).
      request_log: Sampled request logging; None = off.
    """

    models: tuple[ModelSettings, ...] = ()
    model_config_file: str | None = None
    host: str = "127.0.0.1"
    grpc_port: _Port = 8500
    rest_port: _Port | None = 8501
    file_system_poll_s: Annotated[float, Field(gt=0)] = 1.0
    model_config_file_poll_s: Annotated[float, Field(ge=0)] = 0.0
    max_request_bytes: Annotated[int, Field(gt=0)] = 64 * 1024 * 1024
    grpc_max_workers: Annotated[int, Field(ge=1)] = 64
    grpc_max_concurrent_rpcs: Annotated[int, Field(ge=1)] | None = None
    grpc_max_streams_per_connection: Annotated[int, Field(ge=1)] = 16
    grpc_max_connection_age_s: Annotated[float, Field(gt=0)] = 120.0
    grpc_max_connection_age_grace_s: Annotated[float, Field(gt=0)] = 30.0
    grpc_max_connection_idle_s: Annotated[float, Field(gt=0)] = 600.0
    max_request_elements: Annotated[int, Field(ge=1)] = 4_000_000
    max_examples_per_request: Annotated[int, Field(ge=1)] = 10_000
    max_num_load_retries: Annotated[int, Field(ge=0)] = 5
    load_retry_interval_s: Annotated[float, Field(ge=0)] = 60.0
    schema_path: str | None = None
    input_validation: InputValidation = "enforce"
    batching: BatchingSettings | None = None
    warmup: bool = True
    tf_serving_health_names: bool = False
    drain_timeout_s: Annotated[float, Field(ge=0)] = 10.0
    tls: TlsServerSettings | None = None
    tracing: TracingSettings = TracingSettings()
    request_log: RequestLogSettings | None = None

    @pydantic.field_validator("models")
    @classmethod
    def _check_unique_names(cls, models: tuple[ModelSettings, ...]) -> tuple[ModelSettings, ...]:
        names = [m.name for m in models]
        check_field(len(set(names)) == len(names), "", "unique model names", names)
        return models

    @pydantic.model_validator(mode="after")
    def _check_models(self) -> ServerSettings:
        check_field(
            bool(self.models or self.model_config_file),
            "models",
            "at least one model, or a model_config_file",
            self.models,
        )
        check_field(
            self.grpc_max_concurrent_rpcs is None
            or self.grpc_max_concurrent_rpcs < self.grpc_max_workers,
            "grpc_max_concurrent_rpcs",
            f"fewer than grpc_max_workers ({self.grpc_max_workers}), leaving threads for probes",
            self.grpc_max_concurrent_rpcs,
        )
        return self

    @property
    def concurrent_rpc_limit(self) -> int:
        """`grpc_max_concurrent_rpcs`, or its default below the thread count."""
        if self.grpc_max_concurrent_rpcs is not None:
            return self.grpc_max_concurrent_rpcs
        return max(1, self.grpc_max_workers * 3 // 4)


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
