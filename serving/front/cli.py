"""`python -m serving.front`: the request-logging front beside tensorflow_model_server."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence

import typed_config
from serving import cli as serving_cli
from serving.front.settings import FrontSettings

logger = logging.getLogger(__name__)
EXIT_CONFIG_ERROR = serving_cli.EXIT_CONFIG_ERROR
# Where TF Serving answers in the pod (kubeflow/tf-serving: --port=8510, --rest_api_port=8511):
# flag defaults of the pod's layout; `FrontSettings.backend_grpc` itself has none.
DEFAULT_BACKEND_GRPC = "127.0.0.1:8510"
DEFAULT_BACKEND_REST = "http://127.0.0.1:8511"


def parser() -> argparse.ArgumentParser:
    """The front's flags (request-log flags named as `python -m serving`'s).

    A flag left out is None and not passed on, so `FrontSettings` supplies the default (written
    once there); the help texts print it.
    """
    F = FrontSettings  # noqa: N806
    shown = serving_cli.shown
    p = argparse.ArgumentParser(prog="python -m serving.front", description=__doc__)
    p.add_argument("--port", type=int, help=f"clients' gRPC port ({shown(F, 'grpc_port')})")
    p.add_argument(
        "--rest_api_port", type=int, help=f"clients' REST port, -1 = off ({shown(F, 'rest_port')})"
    )
    p.add_argument("--host", help=f"interface, containers pass 0.0.0.0 ({shown(F, 'host')})")
    p.add_argument(
        "--backend_grpc", default=DEFAULT_BACKEND_GRPC, help="TF Serving's gRPC address in the pod"
    )
    p.add_argument(
        "--backend_rest", default=DEFAULT_BACKEND_REST, help="TF Serving's REST URL in the pod"
    )
    p.add_argument("--metrics_port", type=int, help="front's own metrics port (-1 = off, default)")
    p.add_argument("--grpc_max_threads", type=int, help=shown(F, "grpc_max_threads"))
    p.add_argument("--max_request_bytes", type=int, help=shown(F, "max_request_bytes"))
    p.add_argument("--backend_timeout_seconds", type=float, help=shown(F, "backend_timeout_s"))
    p.add_argument(
        "--rest_max_backend_connections",
        type=int,
        help=shown(F, "rest_max_backend_connections"),
    )
    p.add_argument("--drain_seconds", type=float, help=shown(F, "drain_s"))
    serving_cli.add_request_log_flags(p)
    p.add_argument("--log_level", default="INFO")
    p.add_argument("--log_format", choices=("json", "text"), default="json")
    return p


def _port_or_off(value: int | None, name: str) -> dict[str, object]:
    # None is a value of the settings (off): passed whenever the flag is given, -1 meaning off.
    return {} if value is None else {name: None if value < 0 else value}


def settings_from_args(args: argparse.Namespace) -> FrontSettings:
    """Validated settings (typed_config.ConfigError names the field that is wrong)."""
    return typed_config.build(
        FrontSettings,
        serving_cli.given(
            host=args.host,
            grpc_port=args.port,
            backend_grpc=args.backend_grpc,
            backend_rest=args.backend_rest or None,
            grpc_max_threads=args.grpc_max_threads,
            max_request_bytes=args.max_request_bytes,
            backend_timeout_s=args.backend_timeout_seconds,
            rest_max_backend_connections=args.rest_max_backend_connections,
            drain_s=args.drain_seconds,
            request_log=serving_cli.request_log_values(args),
        )
        | _port_or_off(args.rest_api_port, "rest_port")
        | _port_or_off(args.metrics_port, "metrics_port"),
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the front until SIGTERM or SIGINT."""
    parsed = serving_cli.configured(parser(), argv, settings_from_args)
    if parsed is None:
        return EXIT_CONFIG_ERROR
    _, settings = parsed
    from serving.front.server import Front  # TensorFlow's protos load here, after the flags.

    front = Front(settings)
    try:
        front.start()
    except (OSError, RuntimeError) as e:
        logger.error("Cannot start the front: %s", e)
        front.stop()
        return 2
    serving_cli.wait_for_signal()
    front.stop()
    return 0
