"""`python -m serving`: the model server CLI (flags named like tensorflow_model_server's)."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from typing import TypeVar

import schemas
import typed_config
from model_contract import WARMUP_FILE
from serving import logs
from serving.settings import (
    LATEST,
    SERVICE_NAME,
    SPECIFIC,
    TRACE_SAMPLING_RATIO,
    VALIDATION_MODES,
    BatchingSettings,
    RequestLogSettings,
    ServerSettings,
)
from serving.tracing import EXPORTERS

logger = logging.getLogger(__name__)
EXIT_CONFIG_ERROR = 2
T = TypeVar("T")
# The model name of flag mode: the one flag default that is not a settings default
# (ModelSettings.name has none).
DEFAULT_MODEL_NAME = "chicago_taxi"


def settings_default(cls: type, name: str) -> object:
    """A settings field's default: the one place each default is written."""
    (field,) = [f for f in dataclasses.fields(cls) if f.name == name]
    return field.default


def shown(cls: type, name: str, scale: float = 1.0) -> str:
    value = settings_default(cls, name)
    if isinstance(value, (int, float)) and not isinstance(value, bool) and scale != 1.0:
        value = int(value * scale)
    return f"default {value}"


def _flag_bool(value: str) -> bool:
    return value.lower() in ("1", "true", "yes")


def _parser() -> argparse.ArgumentParser:
    """The flags (named like tensorflow_model_server's); defaults are left to the settings.

    A flag left out is None and not passed on, so `ServerSettings` (and its nested settings)
    supply the default; the help texts print those defaults.
    """
    p = argparse.ArgumentParser(prog="python -m serving", description=__doc__)
    S, B = ServerSettings, BatchingSettings  # noqa: N806
    p.add_argument("--port", type=int, help=f"gRPC port ({shown(S, 'grpc_port')})")
    p.add_argument(
        "--rest_api_port", type=int, help=f"REST port, -1 = off ({shown(S, 'rest_port')})"
    )
    p.add_argument(
        "--host",
        help="interface to bind (loopback by default; containers pass 0.0.0.0)",
    )
    p.add_argument("--model_name", default=DEFAULT_MODEL_NAME)
    p.add_argument("--model_base_path", help="directory of numeric version folders")
    p.add_argument("--model_config_file", help="text ModelServerConfig (overrides name/base path)")
    p.add_argument("--model_config_file_poll_wait_seconds", type=float)
    p.add_argument("--file_system_poll_wait_seconds", type=float)
    p.add_argument("--num_versions", type=int, help="latest-N policy (flag mode)")
    p.add_argument("--versions", default="", help="comma-separated specific versions (flag mode)")
    p.add_argument(
        "--schema", default="", help="schema.pbtxt for input validation ('' = curated taxi)"
    )
    p.add_argument("--input_validation", choices=VALIDATION_MODES)
    p.add_argument("--max_request_bytes", type=int, help=shown(S, "max_request_bytes"))
    p.add_argument("--grpc_max_threads", type=int, help=shown(S, "grpc_max_workers"))
    p.add_argument(
        "--grpc_max_concurrent_rpcs",
        type=int,
        help="gRPC calls in progress before new ones get RESOURCE_EXHAUSTED "
        "(default: 3/4 of --grpc_max_threads)",
    )
    p.add_argument(
        "--grpc_max_streams_per_connection",
        type=int,
        help="gRPC streams one connection may hold "
        f"({shown(S, 'grpc_max_streams_per_connection')})",
    )
    p.add_argument(
        "--grpc_max_connection_age_seconds",
        type=float,
        help=f"GOAWAY after this age ({shown(S, 'grpc_max_connection_age_s')})",
    )
    p.add_argument(
        "--grpc_max_connection_age_grace_seconds",
        type=float,
        help="then close, cancelling stalled streams "
        f"({shown(S, 'grpc_max_connection_age_grace_s')})",
    )
    p.add_argument(
        "--grpc_max_connection_idle_seconds",
        type=float,
        help=f"close idle connections ({shown(S, 'grpc_max_connection_idle_s')})",
    )
    p.add_argument("--max_request_elements", type=int, help=shown(S, "max_request_elements"))
    p.add_argument(
        "--max_examples_per_request", type=int, help=shown(S, "max_examples_per_request")
    )
    p.add_argument("--max_num_load_retries", type=int, help=shown(S, "max_num_load_retries"))
    p.add_argument(
        "--load_retry_interval_micros",
        type=int,
        help="wait before retrying a failed load, doubled after each failed retry "
        f"({shown(S, 'load_retry_interval_s', 1e6)})",
    )
    p.add_argument("--enable_batching", action="store_true")
    p.add_argument("--max_batch_size", type=int, help=shown(B, "max_batch_size"))
    p.add_argument("--batch_timeout_micros", type=int, help=shown(B, "batch_timeout_s", 1e6))
    p.add_argument(
        "--enable_model_warmup",
        type=_flag_bool,
        help=f"replay {WARMUP_FILE} before serving a version ({shown(S, 'warmup')})",
    )
    p.add_argument(
        "--enable_grpc_healthcheck_service",
        type=_flag_bool,
        help="also report TF Serving's grpc.health.v1 names (ModelService, PredictionService: "
        "SERVING while the server runs); the overall and per-model names are always served",
    )
    p.add_argument(
        "--monitoring_config_file",
        default="",
        help="accepted for TF Serving compatibility: metrics are always on the REST port",
    )
    # Request logging: TF Serving sets it per model in --model_config_file's `logging_config`
    # (`log_collector_config { filename_prefix }`, `sampling_config { sampling_rate }`); here
    # it is one server-wide setting, named after those fields.
    add_request_log_flags(p)
    p.add_argument("--drain_seconds", type=float, help=shown(S, "drain_timeout_s"))
    p.add_argument("--ssl_cert", help="PEM server certificate (enables TLS on gRPC and REST)")
    p.add_argument("--ssl_key", help="PEM server key")
    p.add_argument("--ssl_client_ca", help="PEM CA for client certificates (mutual TLS)")
    # Tracing (serving/tracing.py): OpenTelemetry spans per request, W3C traceparent honoured.
    p.add_argument("--trace_exporter", choices=EXPORTERS)
    p.add_argument("--otlp_endpoint", help="OTLP/gRPC collector, e.g. localhost:4317")
    p.add_argument(
        "--trace_sampling_ratio",
        type=float,
        help=f"share of new traces recorded (default {TRACE_SAMPLING_RATIO})",
    )
    p.add_argument("--trace_service_name", help=f"default {SERVICE_NAME}")
    p.add_argument("--log_level", default="INFO")
    p.add_argument("--log_format", choices=("json", "text"), default="json")
    return p


def configured(
    parser: argparse.ArgumentParser,
    argv: Sequence[str] | None,
    build: Callable[[argparse.Namespace], T],
) -> tuple[argparse.Namespace, T] | None:
    """The start of every serving process: flags parsed, logging set, settings built.

    Returns:
      The flags and the settings, or None once a config error was logged (exit with
      `EXIT_CONFIG_ERROR`); TensorFlow is not imported by then, so errors answer at once.
    """
    args = parser.parse_args(argv)
    logs.configure(args.log_level, args.log_format)
    try:
        return args, build(args)
    except typed_config.ConfigError as e:
        logger.error("config error: %s", e)
        return None


def given(**values: object) -> dict[str, object]:
    """The values whose flags were given: the settings' defaults apply to the others."""
    return {k: v for k, v in values.items() if v is not None}


def add_request_log_flags(p: argparse.ArgumentParser, *, required: bool = False) -> None:
    """The request-log flags of every serving process (server, front, KServe sink).

    Defaults come from `RequestLogSettings` (written once there); `--request_log_dir` empty
    turns the log off unless `required`.
    """
    R = RequestLogSettings  # noqa: N806
    if required:
        p.add_argument("--request_log_dir", required=True, help="where sampled requests go")
    else:
        p.add_argument(
            "--request_log_dir", default="", help="log sampled requests here ('' = log off)"
        )
    p.add_argument("--request_log_sampling_rate", type=float, help=shown(R, "sampling_rate"))
    p.add_argument("--request_log_filename_prefix", help=shown(R, "filename_prefix"))
    p.add_argument("--request_log_max_file_bytes", type=int, help=shown(R, "max_file_bytes"))
    p.add_argument("--request_log_max_total_bytes", type=int, help=shown(R, "max_total_bytes"))
    p.add_argument("--request_log_queue_size", type=int, help=shown(R, "queue_size"))


def request_log_values(args: argparse.Namespace) -> dict[str, object] | None:
    """The given request-log flags as `RequestLogSettings` values (None: the log is off)."""
    if not args.request_log_dir:
        return None
    return given(
        directory=args.request_log_dir,
        sampling_rate=args.request_log_sampling_rate,
        filename_prefix=args.request_log_filename_prefix,
        max_file_bytes=args.request_log_max_file_bytes,
        max_total_bytes=args.request_log_max_total_bytes,
        queue_size=args.request_log_queue_size,
    )


def _scaled(value: float | None, factor: float) -> float | None:
    return None if value is None else value * factor


def settings_from_args(args: argparse.Namespace) -> ServerSettings:
    """Builds ServerSettings from parsed flags.

    Args:
      args: Flags from `_parser()`.

    Returns:
      The settings.

    Raises:
      ConfigError: If the flags are inconsistent or a value is invalid (naming the
        settings field, e.g. `models.0.version_policy.num_versions`).
    """
    models: list[dict[str, object]] = []
    if not args.model_config_file:
        if not args.model_base_path:
            raise typed_config.ConfigError("Give --model_base_path or --model_config_file")
        policy: dict[str, object] = (
            {"kind": SPECIFIC, "versions": args.versions}  # `1,2`: split by the settings
            if args.versions
            else given(kind=LATEST, num_versions=args.num_versions)
        )
        models.append(
            {"name": args.model_name, "base_path": args.model_base_path, "version_policy": policy}
        )
    schema_path: str | None = args.schema
    if not schema_path and args.input_validation != "off":
        schema_path = schemas.schema_path("taxi")
    tls = None
    if args.ssl_cert or args.ssl_key:
        if not (args.ssl_cert and args.ssl_key):
            raise typed_config.ConfigError("--ssl_cert and --ssl_key go together")
        tls = {
            "cert_file": args.ssl_cert,
            "key_file": args.ssl_key,
            "client_ca_file": args.ssl_client_ca,
        }
    request_log = request_log_values(args)
    batching = given(
        max_batch_size=args.max_batch_size,
        batch_timeout_s=_scaled(args.batch_timeout_micros, 1e-6),
    )
    rest_port = args.rest_api_port
    return typed_config.build(
        ServerSettings,
        given(
            models=models,
            model_config_file=args.model_config_file,
            host=args.host,
            grpc_port=args.port,
            file_system_poll_s=args.file_system_poll_wait_seconds,
            model_config_file_poll_s=args.model_config_file_poll_wait_seconds,
            max_request_bytes=args.max_request_bytes,
            grpc_max_workers=args.grpc_max_threads,
            grpc_max_concurrent_rpcs=args.grpc_max_concurrent_rpcs,
            grpc_max_streams_per_connection=args.grpc_max_streams_per_connection,
            grpc_max_connection_age_s=args.grpc_max_connection_age_seconds,
            grpc_max_connection_age_grace_s=args.grpc_max_connection_age_grace_seconds,
            grpc_max_connection_idle_s=args.grpc_max_connection_idle_seconds,
            max_request_elements=args.max_request_elements,
            max_examples_per_request=args.max_examples_per_request,
            max_num_load_retries=args.max_num_load_retries,
            load_retry_interval_s=_scaled(args.load_retry_interval_micros, 1e-6),
            schema_path=schema_path or None,
            input_validation=args.input_validation,
            batching=batching if args.enable_batching else None,
            warmup=args.enable_model_warmup,
            tf_serving_health_names=args.enable_grpc_healthcheck_service,
            drain_timeout_s=args.drain_seconds,
            tls=tls,
            tracing=given(
                exporter=args.trace_exporter,
                otlp_endpoint=args.otlp_endpoint,
                service_name=args.trace_service_name,
                sampling_ratio=args.trace_sampling_ratio,
            ),
            request_log=request_log,
        )
        # None is a value here (REST off): passed whenever the flag is given.
        | ({"rest_port": None if rest_port < 0 else rest_port} if rest_port is not None else {}),
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the server until SIGTERM or SIGINT, then shuts down gracefully.

    Args:
      argv: Command-line arguments (default: sys.argv[1:]).

    Returns:
      Process exit status.
    """
    parsed = configured(_parser(), argv, settings_from_args)
    if parsed is None:
        return EXIT_CONFIG_ERROR
    _, settings = parsed
    # Imported once the settings are valid: TensorFlow loads in seconds, --help and config
    # errors answer at once.
    from serving.server import ModelServer

    try:
        server = ModelServer(settings)
        server.start()
    except (ValueError, OSError, RuntimeError) as e:
        logger.error("Cannot start the server: %s", e)
        return 2
    wait_for_signal()
    server.stop()
    return 0


def wait_for_signal() -> None:
    """Blocks until SIGTERM or SIGINT (a serving process then stops and drains)."""
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        logger.info("Received signal %d: shutting down", signum)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    stop.wait()


if __name__ == "__main__":
    sys.exit(main())
