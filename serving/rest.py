"""REST front end: TF Serving's REST API, health probes and Prometheus metrics."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import json
import logging
import socket
import ssl
import threading
from collections.abc import Callable, Mapping
from typing import Any

import tornado.httpserver
import tornado.netutil
import tornado.web
from tensorflow_serving.apis import get_model_metadata_pb2, get_model_status_pb2

from serving import rest_codec
from serving.errors import (
    InvalidArgumentError,
    ResourceExhaustedError,
    ServingError,
    http_status,
)
from serving.metrics import ServingMetrics
from serving.protocompat import message_to_dict_with_defaults
from serving.request_scope import Call, Drain, RequestScope
from serving.rest_codec import CORS_ORIGIN, METRICS_PATHS, RouteError, json_example
from serving.service import InferenceService, Target
from serving.tracing import ServerTracing, finish_rest_span

# `json_example` moved to rest_codec; importable from here too (the request-logging front).
__all__ = ["Reply", "RestServer", "json_example"]

logger = logging.getLogger(__name__)

_VERBS = ("predict", "classify", "regress")
_RESPONSES = {
    "Predict": rest_codec.predict_response,
    "Classify": rest_codec.classify_response,
    "Regress": rest_codec.regress_response,
}

# Bodies declared up to this many times the limit are read and discarded so that the client
# gets its 429 rather than a reset; larger ones are answered at once and the connection closed.
_DISCARD_FACTOR = 4


@dataclasses.dataclass(frozen=True)
class Reply:
    """An HTTP answer: status, content type ("" = none) and body."""

    status: int
    content_type: str
    body: bytes


@tornado.web.stream_request_body
class _Handler(tornado.web.RequestHandler):
    """Hands every GET/POST to `RestServer.handle` on the bounded worker pool.

    The body is streamed in so that the size limit answers RESOURCE_EXHAUSTED (429) as TF
    Serving does, instead of tornado's bare 400 for bodies over `max_body_size`.
    """

    # Every verb reaches `RestServer.handle`: TF Serving answers the ones it does not route
    # with its JSON "Malformed request" error, not an HTML 405 page.
    SUPPORTED_METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS")

    def initialize(self, rest: RestServer) -> None:  # type: ignore[override]
        self._rest = rest
        self._chunks: list[bytes] = []
        self._size = 0

    def prepare(self) -> None:
        # tornado checks the framing (one non-negative integer Content-Length) only when it
        # reads the body, after this: anything else is left to it (400).
        length = self.request.headers.get("Content-Length", "")
        # ASCII digits only: str.isdigit() accepts '²', which int() refuses (a 500, issue 17).
        if (
            length.isascii()
            and length.isdigit()
            and int(length) > _DISCARD_FACTOR * self._rest.max_request_bytes
        ):
            # Far too large to read: answer now; tornado closes the connection, body unread
            # (raising its cap first, so that it does not also write its own 400).
            self.request.connection.set_max_body_size(int(length))  # type: ignore[union-attr]
            self._reply(self._rest.too_large(int(length)))

    def data_received(self, chunk: bytes) -> None:
        self._size += len(chunk)
        if self._size <= self._rest.max_request_bytes:
            self._chunks.append(chunk)
        else:
            self._chunks = []  # over the limit: read on only to answer, keep nothing

    def set_default_headers(self) -> None:
        self.clear_header("Server")  # no server software or version to fingerprint

    async def get(self) -> None:
        await self._dispatch(None)

    async def put(self) -> None:
        await self._dispatch(None)

    async def delete(self) -> None:
        await self._dispatch(None)

    async def patch(self) -> None:
        await self._dispatch(None)

    async def options(self) -> None:
        await self._dispatch(None)

    async def head(self) -> None:
        await self._dispatch(None)

    async def post(self) -> None:
        await self._dispatch(b"".join(self._chunks))

    async def _dispatch(self, body: bytes | None) -> None:
        if self._finished:
            return
        too_large = self._size > self._rest.max_request_bytes
        loop = asyncio.get_running_loop()
        reply = await loop.run_in_executor(
            self._rest.pool,
            self._rest.traced_handle,
            self.request.headers,
            self.request.method or "",
            self.request.path,
            body,
            self._size if too_large else None,
        )
        self._reply(reply)

    def _reply(self, reply: Reply) -> None:
        self.set_status(reply.status)
        if reply.content_type:
            self.set_header("Content-Type", reply.content_type)
        else:
            self.clear_header("Content-Type")
        if self._rest.draining:
            # Tells keep-alive clients not to reuse the connection; `stop` closes it.
            self.set_header("Connection", "close")
        self.finish(reply.body)

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        logger.error("REST %s %s failed", self.request.method, self.request.path, exc_info=value)


def _log_request(handler: tornado.web.RequestHandler) -> None:
    # Access lines at DEBUG (tornado logs 4xx as warnings): failures are logged with their
    # TF Serving code by `RestServer._handle`.
    request = handler.request
    logger.debug(
        "REST %s %s %s %d", request.remote_ip, request.method, request.uri, handler.get_status()
    )


class RestServer:
    """TF Serving's REST API, probes and metrics on tornado's HTTP/1.1 server.

    One event-loop thread owns every connection (no thread per connection); request handling
    (TensorFlow calls) runs on a bounded thread pool. tornado enforces the HTTP framing this
    server relies on: strict request lines (no HTTP/0.9), a single integer Content-Length,
    chunked bodies, a total body cap (`max_body_size`), and timeouts for connections that go
    idle or send headers or bodies too slowly (`idle_connection_timeout`, `body_timeout`).
    """

    def __init__(
        self,
        host: str,
        port: int,
        service: InferenceService,
        metrics: ServingMetrics,
        max_request_bytes: int,
        is_ready: Callable[[], bool],
        max_workers: int = 16,
        idle_timeout_s: float = 60.0,
        body_timeout_s: float = 60.0,
        tracing: ServerTracing | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        """Binds the port (0 = any free port); call `start` to serve.

        Args:
          host: Interface to bind.
          port: Port.
          service: Request handling.
          metrics: Metrics to update and expose.
          max_request_bytes: Larger bodies are refused with RESOURCE_EXHAUSTED (HTTP 429).
          is_ready: Readiness of the whole server (models loaded, not draining).
          max_workers: Threads handling requests (connections take none).
          idle_timeout_s: A connection idle (or sending its headers) this long is closed.
          body_timeout_s: A request body not received within this time closes the connection.
          tracing: Request spans (None = none).
          ssl_context: Serve HTTPS with it (the gRPC TLS files); None = plain HTTP.
        """
        self.tracing = tracing or ServerTracing(None)
        self._ssl_context = ssl_context
        self._service = service
        self._metrics = metrics
        self.max_request_bytes = max_request_bytes
        self._is_ready = is_ready
        self._idle_timeout_s = idle_timeout_s
        self._body_timeout_s = body_timeout_s
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers, thread_name_prefix="rest")
        self._sockets = tornado.netutil.bind_sockets(
            port,
            host,
            family=socket.AF_INET,
            backlog=1024,  # bursts queue, not reset
        )
        self.drain = Drain()
        self.scope = RequestScope(metrics, self.drain, traced=self.tracing.provider is not None)
        self.draining = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._http: tornado.httpserver.HTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The bound port."""
        return int(self._sockets[0].getsockname()[1])

    def start(self) -> None:
        """Serves on an event loop in a background thread; returns once it accepts."""
        started = threading.Event()

        def serve() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            self._loop = loop
            app = tornado.web.Application(
                [(r"/.*", _Handler, {"rest": self})], log_function=_log_request
            )
            self._http = tornado.httpserver.HTTPServer(
                app,
                max_body_size=_DISCARD_FACTOR * self.max_request_bytes,
                idle_connection_timeout=self._idle_timeout_s,
                body_timeout=self._body_timeout_s,
                ssl_options=self._ssl_context,
            )
            self._http.add_sockets(self._sockets)
            loop.call_soon(started.set)
            loop.run_forever()
            loop.close()

        self._thread = threading.Thread(target=serve, name="rest", daemon=True)
        self._thread.start()
        started.wait()

    def stop(self, drain_timeout_s: float) -> None:
        """Stops accepting, waits for in-flight requests (bounded), closes the connections.

        Args:
          drain_timeout_s: Longest wait for in-flight requests.
        """
        loop, http = self._loop, self._http
        if loop is None or http is None:
            self.pool.shutdown(wait=False)
            return
        self.draining = True  # answers from now on carry `Connection: close`
        loop.call_soon_threadsafe(http.stop)
        left = self.drain.close_and_wait(drain_timeout_s)
        if left:
            logger.warning("REST shutdown: %d requests still running after drain", left)
        closing = asyncio.run_coroutine_threadsafe(http.close_all_connections(), loop)
        with contextlib.suppress(concurrent.futures.TimeoutError):
            closing.result(timeout=5)
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.pool.shutdown(wait=False)

    # Request handling (worker threads) -------------------------------------------------------

    def too_large(self, size: int) -> Reply:
        """The RESOURCE_EXHAUSTED answer to a body of `size` bytes."""
        error = ResourceExhaustedError(
            f"Request body of {size} bytes exceeds the limit of {self.max_request_bytes} bytes"
        )
        return self._error(error)

    @staticmethod
    def _json(status: int, obj: object) -> Reply:
        return Reply(status, "application/json", rest_codec.encode(obj))

    @staticmethod
    def _error(error: ServingError) -> Reply:
        """The error's HTTP status (errors.http_status: the one mapping) and JSON body."""
        if isinstance(error, RouteError):
            # http_rest_api_handler.cc returns ParseModelInfo's error before writing a body.
            return Reply(http_status(error.code), "application/json", b"")
        body = json.dumps({"error": error.message}, separators=(",", ":")).encode()
        return Reply(http_status(error.code), "application/json", body)

    def traced_handle(
        self,
        headers: Mapping[str, str],
        verb: str,
        path: str,
        body: bytes | None,
        oversize: int | None,
    ) -> Reply:
        """`handle` inside a request span, child of the caller's `traceparent` (if tracing)."""
        origin = headers.get("Origin", "")
        if path in METRICS_PATHS or path in ("/healthz", "/livez", "/readyz"):
            return self.handle(verb, path, body, oversize)  # probes and scrapes: no spans
        with self.tracing.rest_span(verb, path, headers) as span:
            reply = self.handle(verb, path, body, oversize, origin)
            finish_rest_span(span, reply.status)
            return reply

    def handle(
        self, verb: str, path: str, body: bytes | None, oversize: int | None, origin: str = ""
    ) -> Reply:
        """Answers one request (runs on the worker pool).

        Args:
          verb: The HTTP method.
          path: URL path (no query).
          body: The request body (POST).
          oversize: The body's size when it exceeded the limit (then `body` is empty).
          origin: The request's Origin header (CORS preflights).

        Returns:
          The reply.
        """
        if verb == "GET" and path in METRICS_PATHS:
            return Reply(200, "text/plain; version=0.0.4", self._metrics.exposition())
        if verb == "GET" and path in ("/healthz", "/livez"):
            return self._json(200, {"status": "alive"})
        if verb == "GET" and path == "/readyz":
            ready = self._is_ready()
            return self._json(200 if ready else 503, {"ready": ready})
        if verb == "OPTIONS" and path.lower().startswith("/v1/"):
            # http_server.cc: a CORS preflight, answered without a body; FAILED_PRECONDITION
            # (400) without an http(s) Origin.
            return Reply(200 if CORS_ORIGIN.search(origin) else 400, "", b"")
        route = rest_codec.POST_ROUTE if verb == "POST" else None
        if verb == "GET":
            route = rest_codec.GET_ROUTE
        match = route.fullmatch(path) if route is not None else None
        if match is None or (verb == "POST" and match.group("verb") not in _VERBS):
            # Unrouted requests are not counted per model (no name to trust); the regex
            # matches its verbs in any case, the handler only lower case.
            return self._error(rest_codec.malformed(verb, path))
        if verb == "GET":
            method = (
                "GetModelMetadata"
                if match.group("subresource") == "metadata"
                else ("GetModelStatus")
            )
        else:
            method = match.group("verb").capitalize()
        call = Call("rest", method, match.group("name") or "")
        try:
            return self.scope.run(
                call, lambda call: self._answer(call, match, raw=body, oversize=oversize)
            )
        except ServingError as e:
            return self._error(e)

    def _answer(self, call: Call, match: Any, raw: bytes | None, oversize: int | None) -> Reply:
        name = rest_codec.decode_arg(call.model) or ""
        call.model = name
        target = Target(
            name,
            rest_codec.route_version(match.group("version")),
            rest_codec.decode_arg(match.group("label")),
        )
        if call.method in ("GetModelMetadata", "GetModelStatus"):
            # http_rest_api_handler.cc: "metadata" is compared case-sensitively; any other GET
            # that matched is a status request.
            if not name:
                raise InvalidArgumentError("Missing model name in request.")
            if call.method == "GetModelMetadata":
                body = self._metadata(target)
                call.version = body["model_spec"]["version"]
            else:
                body = self._status(target)
            return self._json(200, body)
        if oversize is not None:
            raise ResourceExhaustedError(
                f"Request body of {oversize} bytes exceeds the limit of "
                f"{self.max_request_bytes} bytes"
            )
        request = rest_codec.parse_body(raw or b"", self._service.limits)
        target = Target(
            target.name, target.version, target.label, request.get("signature_name", "")
        )
        body, call.version = _RESPONSES[call.method](self._service, target, request)
        return self._json(200, body)

    # TF Serving renders both responses with protobuf's JSON printer, printing fields left at
    # their defaults (tensorflow_serving/model_servers/http_rest_api_handler.cc,
    # ProcessModelStatusRequest / ProcessModelMetadataRequest -> ToJsonString in
    # http_rest_api_util.cc): the status response with the protos' own json_names, the
    # metadata one as {"model_spec": ..., "metadata": {"signature_def": ...}} with proto
    # field names. json_format is the same printer.

    def _status(self, target: Target) -> dict[str, Any]:
        request = get_model_status_pb2.GetModelStatusRequest(model_spec=target.to_spec())
        response = self._service.status(request)
        return message_to_dict_with_defaults(response)

    def _metadata(self, target: Target) -> dict[str, Any]:
        request = get_model_metadata_pb2.GetModelMetadataRequest(
            model_spec=target.to_spec(), metadata_field=["signature_def"]
        )
        response = self._service.metadata(request)
        sig_map = get_model_metadata_pb2.SignatureDefMap()
        response.metadata["signature_def"].Unpack(sig_map)
        return {
            "model_spec": message_to_dict_with_defaults(
                response.model_spec, preserving_proto_field_name=True
            ),
            "metadata": {
                "signature_def": message_to_dict_with_defaults(
                    sig_map, preserving_proto_field_name=True
                )
            },
        }
