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
import urllib.parse
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import tensorflow as tf
import tornado.httpserver
import tornado.netutil
import tornado.web
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
from serving.protocompat import message_to_dict_with_defaults
from serving.service import InferenceService, Target, classification_rows, regression_values
from serving.tracing import ServerTracing, annotate, finish_rest_span

logger = logging.getLogger(__name__)

# tensorflow_serving/model_servers/http_rest_api_util.cc: kPredictionApiGegex (POST) and
# kModelStatusApiRegex (GET), matched whole and case-insensitively. Versions are unsigned.
_POST_ROUTE = re.compile(
    r"(?i)/v1/models/(?P<name>[^/:]+)"
    r"(?:(?:/versions/(?P<version>\d+))|(?:/labels/(?P<label>[^/:]+)))?"
    r":(?P<verb>classify|regress|predict)"
)
_GET_ROUTE = re.compile(
    r"(?i)/v1/models(?:/(?P<name>[^/:]+))?"
    r"(?:(?:/versions/(?P<version>\d+))|(?:/labels/(?P<label>[^/:]+)))?"
    r"(?:/(?P<subresource>metadata))?"
)
# http_server.cc (RestApiRequestDispatcher::ProcessRequest): a CORS preflight is OK when
# its Origin header has an http(s) scheme.
_CORS_ORIGIN = re.compile(r"https?://")
METRICS_PATHS = ("/monitoring/prometheus/metrics", "/metrics")
_INT64_MIN, _INT64_MAX, _UINT64_MAX = -(2**63), 2**63 - 1, 2**64 - 1
# Characters of an error message that go to the log.
_LOGGED_CHARS = 500
# Deeper JSON is refused before conversion (the converters recurse once per level).
MAX_JSON_DEPTH = 64


def _compact(value: object) -> str:
    """A JSON value as TF Serving quotes it in errors (json_tensor.cc, JsonValueToString)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _format_error(doc: object, *parts: str) -> InvalidArgumentError:
    """json_tensor.cc FormatError: "JSON Value: <the value> <what is wrong>"."""
    return InvalidArgumentError(f"JSON Value: {_compact(doc)} " + "".join(parts))


def _is_b64(value: object) -> bool:
    """json_tensor.cc IsValBase64Object: an object whose only key "b64" holds a string."""
    return isinstance(value, dict) and len(value) == 1 and isinstance(value.get("b64"), str)


_KIND_NAMES = {"bytes_list": "bytes", "float_list": "float", "int64_list": "int64"}


def _add_feature_value(value: object, name: str, feature: tf.train.Feature) -> None:
    """One JSON value into a feature, as json_tensor.cc AddValueToFeature.

    The first value fixes the feature's kind: strings and {"b64": ...} are bytes, JSON
    numbers with a fraction or exponent (or beyond the integer ranges) float, other numbers
    and booleans int64; a later value of another kind is an error.
    """
    if value is None or isinstance(value, list) or (isinstance(value, dict) and not _is_b64(value)):
        raise InvalidArgumentError(
            f"Feature: {name} has element with unexpected JSON type: {tensors.json_type(value)}"
        )
    kind: str
    item: Any
    if isinstance(value, bool):
        kind, item = "int64_list", int(value)
    elif isinstance(value, dict):
        kind = "bytes_list"
        try:
            item = base64.b64decode(value["b64"], validate=True)
        except ValueError:
            raise InvalidArgumentError("Unable to base64 decode") from None
    elif isinstance(value, str):
        kind, item = "bytes_list", value.encode("utf-8")
    elif isinstance(value, float) or not _INT64_MIN <= value <= _UINT64_MAX:  # type: ignore[operator]
        kind, item = "float_list", float(value)  # type: ignore[arg-type]
    else:
        kind, item = "int64_list", value
    current = feature.WhichOneof("kind")
    if current is not None and current != kind:
        raise InvalidArgumentError(
            f"Unexpected element type in feature: {name} expecting type: {_KIND_NAMES[current]}"
        )
    if kind == "int64_list" and item > _INT64_MAX:
        raise InvalidArgumentError(
            f"Feature: {name} has uint64_t element. Only int64_t is supported."
        )
    getattr(feature, kind).value.append(item)


def json_example(obj: object) -> tf.train.Example:
    """Converts a REST classify/regress JSON example (feature name -> value(s)) to a tf.Example.

    As tensorflow_serving/util/json_tensor.cc (MakeExampleFromJsonObject): integer JSON
    numbers become int64 features and other numbers float features (send `12.0`, not `12`,
    for a FLOAT feature), booleans int64 1/0, strings and {"b64": ...} bytes.

    Args:
      obj: Decoded JSON object.

    Returns:
      The example.

    Raises:
      InvalidArgumentError: If the object or a value cannot be converted (TF Serving's texts).
    """
    if not isinstance(obj, dict):
        raise InvalidArgumentError(
            f"Example must be JSON object but got JSON {tensors.json_type(obj)}"
        )
    example = tf.train.Example()
    for name, content in obj.items():
        feature = tf.train.Feature()
        for value in content if isinstance(content, list) else [content]:
            _add_feature_value(value, name, feature)
        example.features.feature[name].CopyFrom(feature)
    return example


def _named_inputs(value: object) -> bool:
    return isinstance(value, dict) and not _is_b64(value)


def _rows_to_arrays(instances: list[Any], info: SignatureInfo) -> dict[str, np.ndarray]:
    """The row format, as json_tensor.cc FillTensorMapFromInstancesList (its error texts)."""
    names = sorted(info.inputs)
    if not isinstance(instances[0], dict) and len(names) > 1:
        raise InvalidArgumentError(
            "instances is a plain list, but expecting list of objects as multiple input "
            "tensors required as per tensorinfo_map"
        )
    columns: dict[str, list[object]] = {}
    if _named_inputs(instances[0]):
        for i, row in enumerate(instances):
            if not _named_inputs(row):
                raise InvalidArgumentError(
                    f"Expecting object but got list at item {i} of input list"
                )
            for key, value in row.items():
                if key not in info.inputs:
                    raise InvalidArgumentError(
                        f"Failed to process element: {i} key: {key} of 'instances' list. Error: "
                        f"INVALID_ARGUMENT: JSON object: does not have named input: {key}"
                    )
                columns.setdefault(key, []).append(value)
            if set(row) != set(names):
                raise InvalidArgumentError(
                    f"Failed to process element: {i} of 'instances' list. JSON object: "
                    f"{_compact(row)} keys must be equal to: {','.join(names)}"
                )
    else:
        for i, row in enumerate(instances):
            if _named_inputs(row):
                raise InvalidArgumentError(
                    f"Expecting value/list but got object at item {i} of input list"
                )
        columns = {names[0]: list(instances)}
    return _convert(columns, info)


def _columns_to_arrays(inputs: object, info: SignatureInfo) -> dict[str, np.ndarray]:
    """The columnar format, as json_tensor.cc FillTensorMapFromInputsMap.

    Keys of the `inputs` object that name no signature input are ignored, as there.
    """
    names = sorted(info.inputs)
    if not _named_inputs(inputs):
        if len(names) > 1:
            raise InvalidArgumentError(
                "inputs is a plain value/list, but expecting an object as multiple input "
                "tensors required as per tensorinfo_map"
            )
        return _convert({names[0]: inputs}, info)
    assert isinstance(inputs, dict)
    for name in names:
        if name not in inputs:
            raise InvalidArgumentError(f"Missing named input: {name} in 'inputs' object.")
    return _convert({name: inputs[name] for name in names}, info)


def _convert(columns: Mapping[str, object], info: SignatureInfo) -> dict[str, np.ndarray]:
    return {
        name: tensors.from_json(value, info.inputs[name].dtype, f"Input {name!r}")
        for name, value in columns.items()
    }


def _predict_json(
    service: InferenceService, target: Target, body: dict[str, Any]
) -> tuple[dict[str, Any], str]:
    """A REST predict, as json_tensor.cc FillPredictRequestFromJson / MakeJsonFromTensors."""
    fmt: list[str] = []

    def build(info: SignatureInfo) -> dict[str, np.ndarray]:
        # Checked once the signature is known, as TF Serving does (GetInfoMap first).
        if "instances" in body:
            if "inputs" in body:
                raise _format_error(
                    body,
                    "Not formatted correctly expecting only one of 'inputs' or 'instances' "
                    "keys to exist ",
                )
            instances = body["instances"]
            if not isinstance(instances, list):
                raise _format_error(body, "Expecting 'instances' to be an list/array")
            if not instances:
                raise _format_error(body, "No values in 'instances' array")
            fmt.append("row")
            return _rows_to_arrays(instances, info)
        if "inputs" in body:
            fmt.append("columnar")
            return _columns_to_arrays(body["inputs"], info)
        raise InvalidArgumentError("Missing 'inputs' or 'instances' key")

    result = service.run(target, build)
    values = result.values
    if not values:
        raise InvalidArgumentError("Cannot convert empty tensor map to JSON")
    if fmt == ["columnar"]:
        if len(values) == 1:
            ((name, value),) = values.items()
            return {"outputs": tensors.to_json(value, name)}, str(result.version)
        return {"outputs": {k: tensors.to_json(v, k) for k, v in values.items()}}, str(
            result.version
        )
    # MakeRowFormatJsonFromTensors: every output needs the same first (batch) dimension.
    batch = -1
    for name in sorted(values):
        value = values[name]
        if value.ndim == 0:
            raise InvalidArgumentError(f"Tensor name: {name} has no shape information ")
        if batch >= 0 and value.shape[0] != batch:
            raise InvalidArgumentError(
                f"Tensor name: {name} has inconsistent batch size: {value.shape[0]} "
                f"expecting: {batch}"
            )
        batch = value.shape[0]
    if len(values) == 1:
        ((name, value),) = values.items()
        return {"predictions": tensors.to_json(value, name)}, str(result.version)
    columns = {k: tensors.to_json(v, k) for k, v in values.items()}
    rows = [{k: col[i] for k, col in columns.items()} for i in range(batch)]  # type: ignore[index]
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
    """The request body, as json_tensor.cc ParseJson (its error texts) and FillSignature."""
    if not raw:
        raise InvalidArgumentError("JSON Parse error: The document is empty")
    try:
        body = json.loads(raw)
    except json.JSONDecodeError as e:
        raise InvalidArgumentError(f"JSON Parse error: {e.msg} at offset: {e.pos}") from None
    except UnicodeDecodeError as e:
        raise InvalidArgumentError(
            f"JSON Parse error: Invalid encoding in string. at offset: {e.start}"
        ) from None
    except RecursionError:  # the parser recurses per nesting level
        raise InvalidArgumentError(
            f"JSON Parse error: nested deeper than {MAX_JSON_DEPTH} levels"
        ) from None
    if not isinstance(body, dict):
        raise _format_error(body, "Is not object")
    if not _json_depth_ok(body):
        raise InvalidArgumentError(f"JSON Parse error: nested deeper than {MAX_JSON_DEPTH} levels")
    if not isinstance(body.get("signature_name", ""), str):
        raise _format_error(
            body, "not formatted correctly. 'signature_name' key must be a string value."
        )
    return body


class _RouteError(InvalidArgumentError):
    """A path that matched a route but whose parts do not convert.

    http_rest_api_handler.cc (ProcessRequest) returns ParseModelInfo's error before it
    writes the JSON error body: TF Serving answers 400 with an empty body.
    """


def _route_version(text: str | None) -> int | None:
    """The URL's version number; one beyond int64 is refused as TF Serving's SimpleAtoi does.

    tensorflow_serving/model_servers/http_rest_api_util.cc (ParseModelInfo).
    """
    if text is None:
        return None
    version = int(text)
    if version > _INT64_MAX:
        raise _RouteError(f"Failed to convert version: {text} to numeric.")
    return version


def _decode_arg(text: str | None) -> str | None:
    """A model name or label as http_rest_api_util.cc DecodeArg (curl_easy_unescape) decodes it.

    %XX escapes are decoded, '+' is kept.
    """
    return None if text is None else urllib.parse.unquote(text, errors="surrogateescape")


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
    """Classify/regress examples, as json_tensor.cc FillClassifyRegressRequestFromJson.

    A context's features are merged into every example (an example's own feature wins), as
    TF Serving's ExampleListWithContext input does.
    """
    context = json_example(body["context"]) if "context" in body else None
    if "examples" not in body:
        # TF Serving says "classify" for regress requests too.
        raise _format_error(
            body, "When method is classify, key 'examples' is expected and was not found"
        )
    examples = body["examples"]
    if not isinstance(examples, list):
        raise _format_error(body, "Expecting 'examples' value to be an list/array")
    if not examples:
        raise _format_error(body, "'examples' value is an empty array")
    out = []
    for obj in examples:
        example = json_example(obj)
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
        with self._cond:
            self._inflight += 1
        try:
            with self._metrics.inflight.labels("rest").track_inprogress():
                return self._handle(verb, path, body, oversize, origin)
        finally:
            with self._cond:
                self._inflight -= 1
                self._cond.notify_all()

    def _handle(
        self, verb: str, path: str, raw: bytes | None, oversize: int | None, origin: str
    ) -> Reply:
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
            return Reply(200 if _CORS_ORIGIN.search(origin) else 400, "", b"")
        start = time.perf_counter()
        route = _POST_ROUTE if verb == "POST" else _GET_ROUTE if verb == "GET" else None
        match = route.fullmatch(path) if route is not None else None
        name = (match.group("name") or "") if match else ""
        method, version, code = "Malformed", "", Code.OK
        try:
            if match is None:
                raise _malformed(verb, path)
            name = _decode_arg(name) or ""
            target = Target(
                name, _route_version(match.group("version")), _decode_arg(match.group("label"))
            )
            body: dict[str, Any]
            if verb == "GET":
                # http_rest_api_handler.cc: "metadata" is compared case-sensitively; any other
                # GET that matched is a status request.
                metadata = match.group("subresource") == "metadata"
                method = "GetModelMetadata" if metadata else "GetModelStatus"
                if not name:
                    raise InvalidArgumentError("Missing model name in request.")
                body = self._metadata(target) if metadata else self._status(target)
                if metadata:
                    version = body["model_spec"]["version"]
            elif match.group("verb") in ("predict", "classify", "regress"):
                route_verb = match.group("verb")
                method = route_verb.capitalize()
                if oversize is not None:
                    raise ResourceExhaustedError(
                        f"Request body of {oversize} bytes exceeds the limit of "
                        f"{self.max_request_bytes} bytes"
                    )
                request = _parse_json(raw or b"")
                target = Target(
                    target.name, target.version, target.label, request.get("signature_name", "")
                )
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
                # The regex matches its verbs in any case, the handler only lower case.
                raise _malformed(verb, path)
            return self._json(200, body)
        except ServingError as e:
            code = e.code
            # Shortened: TF Serving's texts can quote the whole request body (FormatError).
            logger.info(
                "REST %s %s failed: %s %s", verb, path, code.name, e.message[:_LOGGED_CHARS]
            )
            if isinstance(e, _RouteError):
                return Reply(http_status(code), "application/json", b"")
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
