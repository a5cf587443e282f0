"""The request-logging front: the gRPC and REST proxies and their request log, started together."""

from __future__ import annotations

import logging

import grpc
from prometheus_client import CollectorRegistry, start_http_server

from serving.front.grpc_proxy import start_grpc
from serving.front.log import RecordLog
from serving.front.rest_proxy import RestFront
from serving.front.settings import FrontSettings
from serving.request_log import RecordSink

logger = logging.getLogger(__name__)


class Front:
    """Forwards the clients' gRPC and REST calls to TF Serving in the same pod, logging a sample."""

    def __init__(self, settings: FrontSettings, sink: RecordSink | None = None) -> None:
        """Builds the log (if configured; `sink` replaces its files); `start` binds the ports."""
        self.settings = settings
        self.registry = CollectorRegistry()
        self.log = (
            RecordLog(settings.request_log, self.registry, sink=sink)
            if settings.request_log is not None
            else None
        )
        self._grpc: grpc.Server | None = None
        self._channel: grpc.Channel | None = None
        self._rest: RestFront | None = None
        self.grpc_port = 0
        self.rest_port: int | None = None

    def start(self) -> None:
        """Starts the log writer, then the gRPC and REST fronts."""
        s = self.settings
        if self.log is not None:
            self.log.start()
        self._grpc, self._channel, self.grpc_port = start_grpc(
            f"{s.host}:{s.grpc_port}", s.backend_grpc, self.log, s.grpc_max_threads
        )
        if not self.grpc_port:
            raise OSError(f"cannot bind gRPC {s.host}:{s.grpc_port}")
        if s.rest_port is not None and s.backend_rest:
            self._rest = RestFront(
                s.host,
                s.rest_port,
                s.backend_rest,
                self.log,
                s.max_request_bytes,
                s.backend_timeout_s,
                s.rest_max_backend_connections,
            )
            self._rest.start()
            self.rest_port = self._rest.port
        if s.metrics_port is not None:
            start_http_server(s.metrics_port, s.host, registry=self.registry)
        logger.info(
            "Front on gRPC %d, REST %s -> TF Serving %s, %s; request log %s",
            self.grpc_port,
            self.rest_port,
            s.backend_grpc,
            s.backend_rest,
            s.request_log.directory if s.request_log else "off",
        )

    def stop(self) -> None:
        """Lets calls in progress finish (up to drain_s), then writes what the log holds."""
        if self._grpc is not None:
            self._grpc.stop(self.settings.drain_s).wait()
        if self._rest is not None:
            self._rest.stop()
        if self._channel is not None:
            self._channel.close()
        if self.log is not None:
            self.log.close()
