"""REST front end: TF Serving's REST API, health probes and Prometheus metrics."""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import contextlib
import dataclasses
import json
import logging
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import tensorflow as tf
import tornado.httpserver
import tornado.netutil
import tornado.web
from google.protobuf import json_format
from tensorflow_serving.apis import get_model_metadata_pb2, get_model_status_pb2

from serving import tensors
from serving.errors import (
    Code,
    InvalidArgumentError,
    NotFoundError,
    ResourceExhaustedError,
    ServingError,
    http_status,
)
from serving.metrics import ServingMetrics
from serving.model import SignatureInfo
from serving.service import InferenceService, Target, classification_rows, regression_values
from serving.tracing import ServerTracing, annotate, finish_rest_span

logger = logging.getLogger(__name__)

_MODEL_ROUTE = re.compile(
    r"^/v1/models/(?P<name>[^/:]+)"
    r"(?:/versions/(?P<version>-?\d+)|/labels/(?P<label>[^/:]+))?"
    r"(?:(?P<metadata>/metadata)|:(?P<verb>[A-Za-z]+))?$"
)
METRICS_PATHS = ("/monitoring/prometheus/metrics", "/metrics")
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
# Deeper JSON is refused before conversion (the converters recurse once per level).
MAX_JSON_DEPTH = 64


def _json_feature(name: str, value: object, feature: tf.train.Feature) -> None:
    values = value if isinstance(value, list) else [value]
    if not values:
        return
    decoded: list[Any] = []
    for v in values:
        if isinstance(v, dict) and set(v) == {"b64"} and isinstance(v["b64"], str):
            try:
                decoded.append(base64.b64decode(v["b64"], validate=True))
            except ValueError:
                raise InvalidArgumentError(
                    f"Feature {name!r}: invalid base64 in {{'b64': ...}}"
                ) from None
        elif isinstance(v, str):
            decoded.append(v.encode("utf-8"))
        elif isinstance(v, bool) or not isinstance(v, (int, float, bytes)):
            raise InvalidArgumentError(f"Feature {name!r}: unsupported JSON value {v!r}")
        else:
            decoded.append(v)
    if all(isinstance(v, bytes) for v in decoded):
        feature.bytes_list.value.extend(decoded)
    elif all(isinstance(v, int) for v in decoded):
        if any(not _INT64_MIN <= v <= _INT64_MAX for v in decoded):
            raise InvalidArgumentError(f"Feature {name!r}: integer out of the int64 range")
        feature.int64_list.value.extend(decoded)
    elif all(isinstance(v, (int, float)) for v in decoded):
        feature.float_list.value.extend(float(v) for v in decoded)
    else:
        raise InvalidArgumentError(f"Feature {name!r}: mixed string and number values")


def json_example(obj: object, where: str) -> tf.train.Example:
    """Converts a REST classify/regress JSON example (feature name -> value(s)) to a tf.Example.

    Integer JSON numbers become int64 features and other numbers float features, as in TF
    Serving: send `12.0`, not `12`, for a FLOAT feature.

    Args:
      obj: Decoded JSON object.
      where: Description for error messages.

    Returns:
      The example.

    Raises:
      InvalidArgumentError: If the object or a value cannot be converted.
    """
    if not isinstance(obj, dict):
        raise InvalidArgumentError(f"{where}: an example must be a JSON object")
    example = tf.train.Example()
    for name, value in obj.items():
        _json_feature(name, value, example.features.feature[name])
    return example


def _named_inputs(value: object) -> bool:
    return isinstance(value, dict) and set(value) != {"b64"}


def _rows_to_arrays(instances: object, info: SignatureInfo) -> dict[str, np.ndarray]:
    if not isinstance(instances, list) or not instances:
        raise InvalidArgumentError("'instances' must be a non-empty JSON array")
    names = sorted(info.inputs)
    if _named_inputs(instances[0]):
        columns: dict[str, list[object]] = {}
        for i, row in enumerate(instances):
            if not _named_inputs(row):
                raise InvalidArgumentError(f"Instance {i}: expected an object of named inputs")
            assert isinstance(row, dict)
            if columns and set(row) != set(columns):
                raise InvalidArgumentError(
                    f"Instance {i}: inputs {sorted(row)} differ from instance 0's {sorted(columns)}"
                )
            for key, value in row.items():
                columns.setdefault(key, []).append(value)
    else:
        if len(names) != 1:
            raise InvalidArgumentError(
                f"The signature has inputs {names}: each instance must be an object naming them"
            )
        columns = {names[0]: list(instances)}
    return _convert(columns, info)


def _columns_to_arrays(inputs: object, info: SignatureInfo) -> dict[str, np.ndarray]:
    names = sorted(info.inputs)
    if _named_inputs(inputs):
        assert isinstance(inputs, dict)
        return _convert(inputs, info)
    if len(names) != 1:
        raise InvalidArgumentError(
            f"The signature has inputs {names}: 'inputs' must be an object naming them"
        )
    return _convert({names[0]: inputs}, info)


def _convert(columns: Mapping[str, object], info: SignatureInfo) -> dict[str, np.ndarray]:
    arrays = {}
    for name, value in columns.items():
        expected = info.inputs.get(name)
        if expected is None:
            raise InvalidArgumentError(
                f"input tensor alias not found in signature: {name}. Inputs expected to be in "
                f"the set {{{','.join(sorted(info.inputs))}}}."
            )
        arrays[name] = tensors.from_json(value, expected.dtype, f"Input {name!r}")
    return arrays


def _predict_json(
    service: InferenceService, target: Target, body: dict[str, Any]
) -> tuple[dict[str, Any], str]:
    has_rows, has_columns = "instances" in body, "inputs" in body
    if has_rows == has_columns:
        raise InvalidArgumentError(
            "Missing 'inputs' or 'instances' key"
            if not has_rows
            else "Not both 'inputs' and 'instances' may be given"
        )
    build: Callable[[SignatureInfo], dict[str, np.ndarray]]
    if has_rows:
        instances = body["instances"]
        build = lambda info: _rows_to_arrays(instances, info)  # noqa: E731
    else:
        inputs = body["inputs"]
        build = lambda info: _columns_to_arrays(inputs, info)  # noqa: E731
    result = service.run(target, build)
    values = result.values
    if has_columns:
        if len(values) == 1:
            ((name, value),) = values.items()
            return {"outputs": tensors.to_json(value, name)}, str(result.version)
        return {"outputs": {k: tensors.to_json(v, k) for k, v in values.items()}}, str(
            result.version
        )
    sizes = {v.shape[0] if v.ndim else -1 for v in values.values()}
    if len(sizes) != 1 or -1 in sizes:
        raise InvalidArgumentError(
            "Row format needs every output to have the same batch size; use 'inputs' instead"
        )
    if len(values) == 1:
        ((name, value),) = values.items()
        return {"predictions": tensors.to_json(value, name)}, str(result.version)
    columns = {k: tensors.to_json(v, k) for k, v in values.items()}
    rows = [{k: col[i] for k, col in columns.items()} for i in range(sizes.pop())]  # type: ignore[index]
    return {"predictions": rows}, str(result.version)


def _json_depth_ok(value: object) -> bool:
    """True when `value` nests at most MAX_JSON_DEPTH arrays/objects (iterative: no recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (list, dict)):
            if depth > MAX_JSON_DEPTH:
                return False
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return True


def _parse_json(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InvalidArgumentError(f"JSON Parse error: {e}") from None
    except RecursionError:  # the parser recurses per nesting level
        raise InvalidArgumentError(
            f"JSON Parse error: nested deeper than {MAX_JSON_DEPTH} levels"
        ) from None
    if not isinstance(body, dict):
        raise InvalidArgumentError("The request body must be a JSON object")
    if not _json_depth_ok(body):
        raise InvalidArgumentError(f"JSON Parse error: nested deeper than {MAX_JSON_DEPTH} levels")
    return body


def _route_version(text: str | None) -> int | None:
    """The URL's version number; one beyond int64 is refused as TF Serving's SimpleAtoi does.

    tensorflow_serving/model_servers/http_rest_api_handler.cc (ProcessModelStatusRequest and
    the predict path): "Failed to convert version: <v> to numbers."
    """
    if text is None:
        return None
    version = int(text)
    if not _INT64_MIN <= version <= _INT64_MAX:
        raise InvalidArgumentError(f"Failed to convert version: {text} to numeric.")
    return version


def _malformed(verb: str, path: str) -> ServingError:
    """An unknown route: TF Serving's INVALID_ARGUMENT (400) under `/v1/`, else NOT_FOUND.

    tensorflow_serving/model_servers/http_rest_api_handler.cc (ProcessRequest) answers
    "Malformed request: <verb> <path>" for every `(?i)/v1/.*` path its route regexes do not
    match (http_rest_api_util.cc); other paths reach no handler there (404).
    """
    message = f"Malformed request: {verb} {path}"
    if path.lower().startswith("/v1/"):
        return InvalidArgumentError(message)
    return NotFoundError(message)


def _examples_json(body: dict[str, Any]) -> list[bytes]:
    examples = body.get("examples")
    if not isinstance(examples, list) or not examples:
        raise InvalidArgumentError("'examples' must be a non-empty JSON array")
    context = json_example(body["context"], "context") if "context" in body else None
    out = []
    for i, obj in enumerate(examples):
        example = json_example(obj, f"Example {i}")
        if context is not None:
            merged = tf.train.Example()
            merged.CopyFrom(context)
            merged.MergeFrom(example)
            example = merged
        out.append(example.SerializeToString())
    return out


# Bodies declared up to this many times the limit are read and discarded so that the client
# gets its 429 rather than a reset; larger ones are answered at once and the connection closed.
_DISCARD_FACTOR = 4


@dataclasses.dataclass(frozen=True)
class Reply:
    """An HTTP answer: status, content type and body."""

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
    SUPPORTED_METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS")

    def initialize(self, rest: RestServer) -> None:  # type: ignore[override]
        self._rest = rest
        self._chunks: list[bytes] = []
        self._size = 0

    def prepare(self) -> None:
        # tornado checks the framing (one non-negative integer Content-Length) only when it
        # reads the body, after this: anything else is left to it (400).
        length = self.request.headers.get("Content-Length", "")
        if length.isdigit() and int(length) > _DISCARD_FACTOR * self._rest.max_request_bytes:
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
        self.set_header("Content-Type", reply.content_type)
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
        self._inflight = 0
        self._cond = threading.Condition()
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
        deadline = time.monotonic() + drain_timeout_s
        with self._cond:
            while self._inflight > 0 and time.monotonic() < deadline:
                self._cond.wait(deadline - time.monotonic())
            if self._inflight:
                logger.warning(
                    "REST shutdown: %d requests still running after drain", self._inflight
                )
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
        return self._json(http_status(error.code), {"error": error.message})

    @staticmethod
    def _json(status: int, obj: object) -> Reply:
        return Reply(status, "application/json", json.dumps(obj, separators=(",", ":")).encode())

    def traced_handle(
        self,
        headers: Mapping[str, str],
        verb: str,
        path: str,
        body: bytes | None,
        oversize: int | None,
    ) -> Reply:
        """`handle` inside a request span, child of the caller's `traceparent` (if tracing)."""
        if path in METRICS_PATHS or path in ("/healthz", "/livez", "/readyz"):
            return self.handle(verb, path, body, oversize)  # probes and scrapes: no spans
        with self.tracing.rest_span(verb, path, headers) as span:
            reply = self.handle(verb, path, body, oversize)
            finish_rest_span(span, reply.status)
            return reply

    def handle(self, verb: str, path: str, body: bytes | None, oversize: int | None) -> Reply:
        """Answers one request (runs on the worker pool).

        Args:
          verb: The HTTP method.
          path: URL path (no query).
          body: The request body (POST).
          oversize: The body's size when it exceeded the limit (then `body` is empty).

        Returns:
          The reply.
        """
        with self._cond:
            self._inflight += 1
        try:
            with self._metrics.inflight.labels("rest").track_inprogress():
                return self._handle(verb, path, body, oversize)
        finally:
            with self._cond:
                self._inflight -= 1
                self._cond.notify_all()

    def _handle(self, verb: str, path: str, raw: bytes | None, oversize: int | None) -> Reply:
        if verb == "GET" and path in METRICS_PATHS:
            return Reply(200, "text/plain; version=0.0.4", self._metrics.exposition())
        if verb == "GET" and path in ("/healthz", "/livez"):
            return self._json(200, {"status": "alive"})
        if verb == "GET" and path == "/readyz":
            ready = self._is_ready()
            return self._json(200 if ready else 503, {"ready": ready})
        start = time.perf_counter()
        match = _MODEL_ROUTE.match(path)
        name = match.group("name") if match else ""
        method, version, code = "Malformed", "", Code.OK
        try:
            if match is None:
                raise _malformed(verb, path)
            target = Target(name, _route_version(match.group("version")), match.group("label"))
            route_verb, metadata = match.group("verb"), match.group("metadata")
            body: dict[str, Any]
            if verb == "GET" and route_verb is None:
                method = "GetModelMetadata" if metadata else "GetModelStatus"
                body = self._metadata(target) if metadata else self._status(target)
                if metadata:
                    version = body["model_spec"]["version"]
            elif (
                verb == "POST"
                and metadata is None
                and route_verb in ("predict", "classify", "regress")
            ):
                method = route_verb.capitalize()
                if oversize is not None:
                    raise ResourceExhaustedError(
                        f"Request body of {oversize} bytes exceeds the limit of "
                        f"{self.max_request_bytes} bytes"
                    )
                request = _parse_json(raw or b"")
                signature = request.get("signature_name", "")
                if not isinstance(signature, str):
                    raise InvalidArgumentError("'signature_name' must be a string")
                target = Target(target.name, target.version, target.label, signature)
                if route_verb == "predict":
                    body, version = _predict_json(self._service, target, request)
                elif route_verb == "classify":
                    result = self._service.classify_serialized(target, _examples_json(request))
                    body = {
                        # tensorflow_serving/util/json_tensor.cc: kClassifyRegressResponseKey.
                        "results": [
                            [[label, score] for label, score in zip(labels, scores, strict=True)]
                            for labels, scores in classification_rows(result.values)
                        ]
                    }
                    version = str(result.version)
                else:
                    result = self._service.regress_serialized(target, _examples_json(request))
                    body = {"results": regression_values(result.values)}
                    version = str(result.version)
            else:
                raise _malformed(verb, path)
            return self._json(200, body)
        except ServingError as e:
            code = e.code
            logger.info("REST %s %s failed: %s %s", verb, path, code.name, e.message)
            return self._json(http_status(code), {"error": e.message})
        except Exception:  # the request boundary: answer 500, keep serving
            # The Python exception goes to the log only: its text can name paths and code.
            code = Code.INTERNAL
            logger.exception("REST %s %s failed unexpectedly", verb, path)
            return self._json(500, {"error": "Internal error (logged by the server)"})
        finally:
            if method != "Malformed":
                self._metrics.observe(
                    name, version, method, "rest", code.name, time.perf_counter() - start
                )
            annotate(name, version, method, code.name)  # the span of `traced_handle`

    # TF Serving renders both responses with protobuf's JSON printer, printing fields left at
    # their defaults (tensorflow_serving/model_servers/http_rest_api_handler.cc,
    # ProcessModelStatusRequest / ProcessModelMetadataRequest -> ToJsonString in
    # http_rest_api_util.cc): the status response with the protos' own json_names, the
    # metadata one as {"model_spec": ..., "metadata": {"signature_def": ...}} with proto
    # field names. json_format is the same printer.

    def _status(self, target: Target) -> dict[str, Any]:
        request = get_model_status_pb2.GetModelStatusRequest(model_spec=target.to_spec())
        response = self._service.status(request)
        return json_format.MessageToDict(response, including_default_value_fields=True)

    def _metadata(self, target: Target) -> dict[str, Any]:
        request = get_model_metadata_pb2.GetModelMetadataRequest(
            model_spec=target.to_spec(), metadata_field=["signature_def"]
        )
        response = self._service.metadata(request)
        sig_map = get_model_metadata_pb2.SignatureDefMap()
        response.metadata["signature_def"].Unpack(sig_map)
        options = {"including_default_value_fields": True, "preserving_proto_field_name": True}
        return {
            "model_spec": json_format.MessageToDict(response.model_spec, **options),
            "metadata": {"signature_def": json_format.MessageToDict(sig_map, **options)},
        }
