"""`python -m serving.kserve_sink`: receives KServe's logger CloudEvents, writes PredictionLogs."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from collections.abc import Sequence

import typed_config
from serving import cli as serving_cli
from serving.settings import RequestLogSettings

logger = logging.getLogger(__name__)
EXIT_CONFIG_ERROR = serving_cli.EXIT_CONFIG_ERROR


def parser() -> argparse.ArgumentParser:
    """The sink's flags (request-log flags named as `python -m serving`'s)."""
    p = argparse.ArgumentParser(prog="python -m serving.kserve_sink", description=__doc__)
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--host", default="127.0.0.1", help="interface (containers pass 0.0.0.0)")
    p.add_argument("--metrics_port", type=int, default=-1, help="Prometheus port (-1 = off)")
    p.add_argument("--max_pending", type=int, default=10_000, help="halves waiting for a pair")
    p.add_argument("--max_pending_seconds", type=float, default=120.0)
    p.add_argument("--max_request_bytes", type=int, default=64 * 1024 * 1024)
    serving_cli.add_request_log_flags(p, required=True)
    p.add_argument("--log_level", default="INFO")
    p.add_argument("--log_format", choices=("json", "text"), default="json")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Serves until SIGTERM or SIGINT, then writes what is queued."""
    parsed = serving_cli.configured(
        parser(),
        argv,
        lambda args: typed_config.build(
            RequestLogSettings, serving_cli.request_log_values(args) or {}
        ),
    )
    if parsed is None:
        return EXIT_CONFIG_ERROR
    args, settings = parsed
    from prometheus_client import CollectorRegistry, start_http_server

    from serving.front.log import RecordLog
    from serving.kserve_sink.sink import Pairing, serve

    registry = CollectorRegistry()
    log = RecordLog(settings, registry)
    log.start()
    pairing = Pairing(log, registry, args.max_pending, args.max_pending_seconds)
    if args.metrics_port >= 0:
        start_http_server(args.metrics_port, args.host, registry=registry)

    async def run() -> None:
        server, port = serve(pairing, args.host, args.port, args.max_request_bytes)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        logger.info("KServe logger sink on %s:%d -> %s", args.host, port, settings.directory)
        await stop.wait()
        server.stop()

    asyncio.run(run())
    log.close()
    return 0
