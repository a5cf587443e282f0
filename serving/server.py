"""The model server: manager, gRPC and REST front ends, with an explicit start/stop lifecycle."""

from __future__ import annotations

import concurrent.futures
import dataclasses
import logging
import ssl
import threading

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from serving import grpc_service, schema, tracing
from serving.manager import ModelManager
from serving.metrics import ServingMetrics
from serving.request_log import RequestLogger
from serving.request_scope import Drain, RequestScope
from serving.rest import RestServer
from serving.service import InferenceService, RequestLimits
from serving.settings import (
    SERVICE_NAME,
    TRACE_SAMPLING_RATIO,
    ServerSettings,
    TlsServerSettings,
)
from serving.validation import ExampleValidator

logger = logging.getLogger(__name__)


# grpc.health.v1 service names: "" is the whole server (SERVING while every configured model
# has an AVAILABLE version and it is not draining); each model name is that model alone.
OVERALL_HEALTH_SERVICE = ""
# What TF Serving 2.16 reports with --enable_grpc_healthcheck_service
# (tensorflow_serving/model_servers/server.cc): SERVING once its gRPC server runs, whatever the
# models' state. Probes written for tensorflow/serving then work against this server too.
TF_SERVING_HEALTH_SERVICES = ("ModelService", "PredictionService")


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def rest_ssl_context(tls: TlsServerSettings) -> ssl.SSLContext:
    """The REST server's TLS context from the same files as gRPC's (mutual when a CA is set)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(tls.cert_file, tls.key_file)
    if tls.client_ca_file:
        context.load_verify_locations(tls.client_ca_file)
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def grpc_server_options(s: ServerSettings) -> list[tuple[str, int]]:
    """gRPC core channel arguments of the server (grpc/grpc include/grpc/impl/channel_arg_names.h).

    Besides the message sizes (TF Serving's server.cc sets the same through
    `builder.SetMaxMessageSize`), these bound what one client can hold (issue 17: 48 stalled
    streams on one connection took every slot of `grpc_max_concurrent_rpcs`, so health checks
    too answered RESOURCE_EXHAUSTED):
      - `grpc.max_concurrent_streams`: HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS, the streams one
        connection may have open; further calls wait in that client, not in the server.
      - `grpc.max_connection_age_ms` / `_grace_ms`: a connection is sent GOAWAY after this age
        (clients open a new one for later calls) and closed after the grace, cancelling the
        streams still open; a stream whose request never arrives is cut then (age + grace at
        most), which frees its thread. Python's synchronous server has no per-call receive
        deadline, and a client that sets no deadline sends none.
      - `grpc.max_connection_idle_ms`: a connection with no stream for this long is closed.
      - `grpc.keepalive_time_ms` / `_timeout_ms`: pings find dead peers (gRPC's server
        default is 2 hours).
    """
    ms = 1000
    return [
        ("grpc.max_receive_message_length", s.max_request_bytes),
        ("grpc.max_send_message_length", -1),
        ("grpc.so_reuseport", 0),
        ("grpc.max_concurrent_streams", s.grpc_max_streams_per_connection),
        ("grpc.max_connection_age_ms", int(s.grpc_max_connection_age_s * ms)),
        ("grpc.max_connection_age_grace_ms", int(s.grpc_max_connection_age_grace_s * ms)),
        ("grpc.max_connection_idle_ms", int(s.grpc_max_connection_idle_s * ms)),
        ("grpc.keepalive_time_ms", 60 * ms),
        ("grpc.keepalive_timeout_ms", 20 * ms),
    ]


class ModelServer:
    """Serves TF Serving's gRPC and REST APIs for the models in `ServerSettings`.

    Lifecycle: `start()` binds the ports and starts watching the model directories;
    `stop()` stops accepting, drains in-flight requests and unloads the models.
    """

    def __init__(
        self, settings: ServerSettings, tracer_provider: tracing.TracerProvider | None = None
    ) -> None:
        """Builds the server; nothing binds or loads before `start`.

        Args:
          settings: Server settings.
          tracer_provider: Where request spans go; None = as `settings.tracing` says.

        Raises:
          OSError, ValueError: If the schema or model config cannot be read.
        """
        self.settings = settings
        self.metrics = ServingMetrics()
        # A provider built here is shut down (flushed) by `stop`; a given one is the caller's.
        self._own_provider = tracer_provider is None
        # New traces are sampled by ServerTracing (cheaply, before OpenTelemetry), so the
        # provider built here records every trace it is given; a caller's provider samples as
        # it was built, and then so does the server unless the settings name a ratio.
        ratio = settings.tracing.sampling_ratio
        if tracer_provider is None:
            tracer_provider = tracing.build_tracer_provider(
                dataclasses.replace(settings.tracing, sampling_ratio=1.0), SERVICE_NAME
            )
            ratio = TRACE_SAMPLING_RATIO if ratio is None else ratio
        self.tracing = tracing.ServerTracing(tracer_provider, 1.0 if ratio is None else ratio)
        validator = None
        if settings.schema_path and settings.input_validation != "off":
            validator = ExampleValidator(schema.load_features(settings.schema_path, "SERVING"))
        self.health = health.HealthServicer()
        self._health_lock = threading.Lock()
        self._health_names: set[str] = set()
        self.manager = ModelManager(
            settings,
            self.metrics,
            validator.detector if validator is not None else None,
            on_change=self._update_health,
        )
        self.request_log: RequestLogger | None = None
        if settings.request_log is not None:
            self.request_log = RequestLogger(settings.request_log, self.metrics.registry)
        self.service = InferenceService(
            self.manager,
            self.metrics,
            validator,
            settings.input_validation,
            request_log=self.request_log,
            limits=RequestLimits(settings.max_request_elements, settings.max_examples_per_request),
        )
        self._drain = Drain()
        self._grpc: grpc.Server | None = None
        self._rest: RestServer | None = None
        self._stopping = threading.Event()
        self._stopped = threading.Event()
        self._update_health()
        self.grpc_port = 0
        self.rest_port: int | None = None

    def start(self) -> None:
        """Binds gRPC (and REST) and starts loading models in the background.

        Raises:
          RuntimeError: If the gRPC port cannot be bound.
          OSError: If the REST port cannot be bound.
        """
        s = self.settings
        options = grpc_server_options(s)
        self._grpc = grpc.server(
            concurrent.futures.ThreadPoolExecutor(
                max_workers=s.grpc_max_workers, thread_name_prefix="grpc"
            ),
            options=options,
            interceptors=self.tracing.grpc_interceptors(),
            # Beyond this, calls get RESOURCE_EXHAUSTED at once instead of waiting for a
            # thread that stalled calls hold; below the thread count, so threads stay free.
            maximum_concurrent_rpcs=s.concurrent_rpc_limit,
        )
        scope = RequestScope(self.metrics, self._drain, traced=self.tracing.provider is not None)
        grpc_service.add_services(self._grpc, self.service, scope)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self._grpc)
        address = f"{s.host}:{s.grpc_port}"
        if s.tls is not None:
            credentials = grpc.ssl_server_credentials(
                [(_read(s.tls.key_file), _read(s.tls.cert_file))],
                root_certificates=_read(s.tls.client_ca_file) if s.tls.client_ca_file else None,
                require_client_auth=s.tls.client_ca_file is not None,
            )
            self.grpc_port = self._grpc.add_secure_port(address, credentials)
        else:
            self.grpc_port = self._grpc.add_insecure_port(address)
        if self.grpc_port == 0:
            raise RuntimeError(f"Cannot bind gRPC on {address}")
        if s.rest_port is not None:
            self._rest = RestServer(
                s.host,
                s.rest_port,
                self.service,
                self.metrics,
                s.max_request_bytes,
                self.ready,
                max_workers=s.grpc_max_workers,
                tracing=self.tracing,
                ssl_context=rest_ssl_context(s.tls) if s.tls is not None else None,
            )
            self.rest_port = self._rest.port
        if self.request_log is not None:
            self.request_log.start()
        self.manager.start()
        self._grpc.start()
        if self._rest is not None:
            self._rest.start()
        logger.info(
            "Serving gRPC on %s:%d, REST on %s (models: %s)",
            s.host,
            self.grpc_port,
            f"{s.host}:{self.rest_port}" if self.rest_port is not None else "off",
            [m.name for m in s.models] or s.model_config_file,
        )

    def ready(self) -> bool:
        """True when every model has an AVAILABLE version and the server is not stopping."""
        return not self._stopping.is_set() and self.manager.ready()

    def _update_health(self) -> None:
        """Sets grpc.health.v1 statuses: per model, and "" for all of them."""
        if self._stopping.is_set():
            return  # enter_graceful_shutdown has set NOT_SERVING for good
        readiness = self.manager.readiness()
        serving, not_serving = (
            health_pb2.HealthCheckResponse.SERVING,
            health_pb2.HealthCheckResponse.NOT_SERVING,
        )
        with self._health_lock:
            for name in self._health_names - set(readiness):  # removed from the config
                self.health.set(name, health_pb2.HealthCheckResponse.SERVICE_UNKNOWN)
            for name, ok in readiness.items():
                self.health.set(name, serving if ok else not_serving)
            self._health_names = set(readiness)
            everything = bool(readiness) and all(readiness.values())
            self.health.set(OVERALL_HEALTH_SERVICE, serving if everything else not_serving)
            if self.settings.tf_serving_health_names:
                for name in TF_SERVING_HEALTH_SERVICES:
                    self.health.set(name, serving)

    def stop(self, drain_timeout_s: float | None = None) -> None:
        """Stops gracefully: refuse new requests, finish in-flight ones, unload models.

        Args:
          drain_timeout_s: Longest wait for in-flight requests (default: the settings').
        """
        if self._stopping.is_set():
            self._stopped.wait()
            return
        self._stopping.set()
        self.health.enter_graceful_shutdown()
        grace = self.settings.drain_timeout_s if drain_timeout_s is None else drain_timeout_s
        logger.info("Shutting down: draining in-flight requests (up to %.1fs)", grace)
        # Order: refuse new calls (UNAVAILABLE) on both front ends, let the admitted ones
        # finish on their open connections, then close the connections, then unload.
        rest = None
        if self._rest is not None:
            rest = threading.Thread(target=self._rest.stop, args=(grace,), name="rest-stop")
            rest.start()
        left = self._drain.close_and_wait(grace)
        if left:
            logger.warning("gRPC shutdown: %d calls still running after %.1fs", left, grace)
        if self._grpc is not None:
            self._grpc.stop(0).wait(5)  # nothing admitted is left (or the grace is over)
        if rest is not None:
            rest.join(grace + 10)
        if self.request_log is not None:
            self.request_log.close()
        self.manager.stop()
        if self._own_provider and self.tracing.provider is not None:
            self.tracing.provider.shutdown()  # flushes the batch processor
        self._stopped.set()
        logger.info("Server stopped")

    def wait(self) -> None:
        """Blocks until `stop` has finished."""
        self._stopped.wait()

    def __enter__(self) -> ModelServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
