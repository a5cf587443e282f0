"""`python -m serving.front`: the request-logging front beside tensorflow_model_server."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence

import typed_config
from serving import cli as serving_cli
from serving import logs
from serving.front.settings import FrontSettings

logger = logging.getLogger(__name__)
EXIT_CONFIG_ERROR = 2


def parser() -> argparse.ArgumentParser:
    """The front's flags (request-log flags named as `python -m serving`'s)."""
    p = argparse.ArgumentParser(prog="python -m serving.front", description=__doc__)
    p.add_argument("--port", type=int, default=8500, help="clients' gRPC port")
    p.add_argument("--rest_api_port", type=int, default=8501, help="clients' REST port (-1 = off)")
    p.add_argument("--host", default="127.0.0.1", help="interface (containers pass 0.0.0.0)")
    p.add_argument(
        "--backend_grpc", default="127.0.0.1:8510", help="TF Serving's gRPC host:port in the pod"
    )
    p.add_argument(
        "--backend_rest", default="http://127.0.0.1:8511", help="TF Serving's REST URL in the pod"
    )
    p.add_argument("--metrics_port", type=int, default=-1, help="front's own metrics (-1 = off)")
    p.add_argument("--grpc_max_threads", type=int, default=32)
    p.add_argument("--max_request_bytes", type=int, default=64 * 1024 * 1024)
    p.add_argument("--backend_timeout_seconds", type=float, default=300.0)
    p.add_argument("--drain_seconds", type=float, default=10.0)
    serving_cli.add_request_log_flags(p)
    p.add_argument("--log_level", default="INFO")
    p.add_argument("--log_format", choices=("json", "text"), default="json")
    return p


def settings_from_args(args: argparse.Namespace) -> FrontSettings:
    """Validated settings (typed_config.ConfigError names the field that is wrong)."""
    request_log = serving_cli.request_log_values(args)
    return typed_config.build(
        FrontSettings,
        {
            "host": args.host,
            "grpc_port": args.port,
            "rest_port": None if args.rest_api_port < 0 else args.rest_api_port,
            "backend_grpc": args.backend_grpc,
            "backend_rest": args.backend_rest or None,
            "metrics_port": None if args.metrics_port < 0 else args.metrics_port,
            "grpc_max_threads": args.grpc_max_threads,
            "max_request_bytes": args.max_request_bytes,
            "backend_timeout_s": args.backend_timeout_seconds,
            "drain_s": args.drain_seconds,
            "request_log": request_log,
        },
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the front until SIGTERM or SIGINT."""
    args = parser().parse_args(argv)
    logs.configure(args.log_level, args.log_format)
    try:
        settings = settings_from_args(args)
    except typed_config.ConfigError as e:
        logger.error("config error: %s", e)
        return EXIT_CONFIG_ERROR
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
