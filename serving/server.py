"""The model server: manager, gRPC and REST front ends, with an explicit start/stop lifecycle."""

from __future__ import annotations

import concurrent.futures
import logging
import threading

import grpc

from serving import grpc_service, schema, tracing
from serving.manager import ModelManager
from serving.metrics import ServingMetrics
from serving.request_log import RequestLogger
from serving.rest import RestServer
from serving.service import InferenceService
from serving.settings import ServerSettings
from serving.validation import ExampleValidator

logger = logging.getLogger(__name__)


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


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
        self.tracing = tracing.ServerTracing(
            tracer_provider or tracing.build_tracer_provider(settings.tracing, "tfx-taxi-serving")
        )
        validator = None
        if settings.schema_path and settings.input_validation != "off":
            validator = ExampleValidator(schema.load_features(settings.schema_path, "SERVING"))
        self.manager = ModelManager(
            settings, self.metrics, validator.detector if validator is not None else None
        )
        self.request_log: RequestLogger | None = None
        if settings.request_log is not None:
            self.request_log = RequestLogger(settings.request_log, self.metrics.registry)
        self.service = InferenceService(
            self.manager, self.metrics, validator, settings.input_validation, self.request_log
        )
        self._grpc: grpc.Server | None = None
        self._rest: RestServer | None = None
        self._stopping = threading.Event()
        self._stopped = threading.Event()
        self.grpc_port = 0
        self.rest_port: int | None = None

    def start(self) -> None:
        """Binds gRPC (and REST) and starts loading models in the background.

        Raises:
          RuntimeError: If the gRPC port cannot be bound.
          OSError: If the REST port cannot be bound.
        """
        s = self.settings
        options = [
            ("grpc.max_receive_message_length", s.max_request_bytes),
            ("grpc.max_send_message_length", -1),
            ("grpc.so_reuseport", 0),
        ]
        self._grpc = grpc.server(
            concurrent.futures.ThreadPoolExecutor(
                max_workers=s.grpc_max_workers, thread_name_prefix="grpc"
            ),
            options=options,
            interceptors=self.tracing.grpc_interceptors(),
        )
        grpc_service.add_services(self._grpc, self.service, self.metrics)
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

    def stop(self, drain_timeout_s: float | None = None) -> None:
        """Stops gracefully: refuse new requests, finish in-flight ones, unload models.

        Args:
          drain_timeout_s: Longest wait for in-flight requests (default: the settings').
        """
        if self._stopping.is_set():
            self._stopped.wait()
            return
        self._stopping.set()
        grace = self.settings.drain_timeout_s if drain_timeout_s is None else drain_timeout_s
        logger.info("Shutting down: draining in-flight requests (up to %.1fs)", grace)
        done = self._grpc.stop(grace) if self._grpc is not None else None
        if self._rest is not None:
            self._rest.stop(grace)
        if done is not None:
            done.wait(grace + 1)
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
