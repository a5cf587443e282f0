"""REST front end: TF Serving's REST API, health probes and Prometheus metrics."""

from __future__ import annotations

import base64
import contextlib
import http.server
import json
import logging
import re
import socket
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import tensorflow as tf
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

logger = logging.getLogger(__name__)

_MODEL_ROUTE = re.compile(
    r"^/v1/models/(?P<name>[^/:]+)"
    r"(?:/versions/(?P<version>-?\d+)|/labels/(?P<label>[^/:]+))?"
    r"(?:(?P<metadata>/metadata)|:(?P<verb>[A-Za-z]+))?$"
)
METRICS_PATHS = ("/monitoring/prometheus/metrics", "/metrics")


def _json_feature(name: str, value: object, feature: tf.train.Feature) -> None:
    values = value if isinstance(value, list) else [value]
    if not values:
        return
    decoded: list[Any] = []
    for v in values:
        if isinstance(v, dict) and set(v) == {"b64"} and isinstance(v["b64"], str):
            decoded.append(base64.b64decode(v["b64"]))
        elif isinstance(v, str):
            decoded.append(v.encode("utf-8"))
        elif isinstance(v, bool) or not isinstance(v, (int, float, bytes)):
            raise InvalidArgumentError(f"Feature {name!r}: unsupported JSON value {v!r}")
        else:
            decoded.append(v)
    if all(isinstance(v, bytes) for v in decoded):
        feature.bytes_list.value.extend(decoded)
    elif all(isinstance(v, int) for v in decoded):
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


class _HttpServer(http.server.ThreadingHTTPServer):
    request_queue_size = 1024  # the default backlog of 5 resets connections under load


def _discard(handler: http.server.BaseHTTPRequestHandler, length: int) -> None:
    remaining = length
    while remaining > 0:
        chunk = handler.rfile.read(min(remaining, 1 << 16))
        if not chunk:
            handler.close_connection = True
            return
        remaining -= len(chunk)


class RestServer:
    """A threaded HTTP/1.1 server for TF Serving's REST API, probes and metrics."""

    def __init__(
        self,
        host: str,
        port: int,
        service: InferenceService,
        metrics: ServingMetrics,
        max_request_bytes: int,
        is_ready: Callable[[], bool],
    ) -> None:
        """Binds the port (0 = any free port); call `start` to serve.

        Args:
          host: Interface to bind.
          port: Port.
          service: Request handling.
          metrics: Metrics to update and expose.
          max_request_bytes: Larger bodies are refused with RESOURCE_EXHAUSTED (HTTP 429).
          is_ready: Readiness of the whole server (models loaded, not draining).
        """
        self._service = service
        self._metrics = metrics
        self._max_bytes = max_request_bytes
        self._is_ready = is_ready
        self._inflight = 0
        self._cond = threading.Condition()
        self._connections: set[socket.socket] = set()
        self._draining = False
        self._httpd = _HttpServer((host, port), self._handler_class())
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The bound port."""
        return int(self._httpd.server_address[1])

    def start(self) -> None:
        """Serves in a background thread."""
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.2},
            name="rest",
            daemon=True,
        )
        self._thread.start()

    def stop(self, drain_timeout_s: float) -> None:
        """Stops accepting, waits for in-flight requests (bounded), closes idle connections.

        Args:
          drain_timeout_s: Longest wait for in-flight requests.
        """
        with self._cond:
            self._draining = True
        self._httpd.shutdown()
        deadline = time.monotonic() + drain_timeout_s
        with self._cond:
            while self._inflight > 0 and time.monotonic() < deadline:
                self._cond.wait(deadline - time.monotonic())
            if self._inflight:
                logger.warning(
                    "REST shutdown: %d requests still running after drain", self._inflight
                )
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        self._httpd.server_close()

    # Request handling ------------------------------------------------------------------------

    def _handler_class(self) -> type[http.server.BaseHTTPRequestHandler]:
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            server_version = "tfx-taxi-serving"
            timeout = 60

            def setup(self) -> None:
                super().setup()
                # Headers and body are separate writes: without this, Nagle's algorithm and
                # the client's delayed ACK add ~40 ms to every keep-alive response.
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                with server._cond:
                    server._connections.add(self.connection)

            def finish(self) -> None:
                try:
                    super().finish()
                finally:
                    with server._cond:
                        server._connections.discard(self.connection)

            def log_message(self, format: str, *args: Any) -> None:
                logger.debug("REST %s - " + format, self.address_string(), *args)

            def do_GET(self) -> None:
                server._dispatch(self, "GET")

            def do_POST(self) -> None:
                server._dispatch(self, "POST")

        return Handler

    def _dispatch(self, handler: http.server.BaseHTTPRequestHandler, verb: str) -> None:
        with self._cond:
            self._inflight += 1
            if self._draining:
                handler.close_connection = True
        try:
            with self._metrics.inflight.labels("rest").track_inprogress():
                self._handle(handler, verb)
        finally:
            with self._cond:
                self._inflight -= 1
                self._cond.notify_all()

    def _send(
        self,
        handler: http.server.BaseHTTPRequestHandler,
        status: int,
        body: bytes,
        content_type: str,
    ) -> None:
        handler.send_response(status)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(body)))
        if handler.close_connection:
            handler.send_header("Connection", "close")
        handler.end_headers()
        handler.wfile.write(body)

    def _send_json(
        self, handler: http.server.BaseHTTPRequestHandler, status: int, obj: object
    ) -> None:
        body = json.dumps(obj, separators=(",", ":")).encode("utf-8")
        self._send(handler, status, body, "application/json")

    def _handle(self, handler: http.server.BaseHTTPRequestHandler, verb: str) -> None:
        path = handler.path.split("?", 1)[0]
        if verb == "GET" and path in METRICS_PATHS:
            self._send(handler, 200, self._metrics.exposition(), "text/plain; version=0.0.4")
            return
        if verb == "GET" and path in ("/healthz", "/livez"):
            self._send_json(handler, 200, {"status": "alive"})
            return
        if verb == "GET" and path == "/readyz":
            ready = self._is_ready()
            self._send_json(handler, 200 if ready else 503, {"ready": ready})
            return
        start = time.perf_counter()
        match = _MODEL_ROUTE.match(path)
        name = match.group("name") if match else ""
        method, version, code = "Malformed", "", Code.OK
        try:
            if match is None:
                raise NotFoundError(f"Malformed request: {verb} {path}")
            target = Target(
                name,
                int(match.group("version")) if match.group("version") else None,
                match.group("label"),
            )
            route_verb, metadata = match.group("verb"), match.group("metadata")
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
                request = self._read_json(handler)
                signature = request.get("signature_name", "")
                if not isinstance(signature, str):
                    raise InvalidArgumentError("'signature_name' must be a string")
                target = Target(target.name, target.version, target.label, signature)
                if route_verb == "predict":
                    body, version = _predict_json(self._service, target, request)
                elif route_verb == "classify":
                    result = self._service.classify_serialized(target, _examples_json(request))
                    body = {
                        "result": [
                            [[label, score] for label, score in zip(labels, scores, strict=True)]
                            for labels, scores in classification_rows(result.values)
                        ]
                    }
                    version = str(result.version)
                else:
                    result = self._service.regress_serialized(target, _examples_json(request))
                    body = {"result": regression_values(result.values)}
                    version = str(result.version)
            else:
                raise NotFoundError(f"Malformed request: {verb} {path}")
            self._send_json(handler, 200, body)
        except ServingError as e:
            code = e.code
            logger.info("REST %s %s failed: %s %s", verb, path, code.name, e.message)
            self._send_json(handler, http_status(code), {"error": e.message})
        except Exception as e:
            code = Code.INTERNAL
            logger.exception("REST %s %s failed unexpectedly", verb, path)
            self._send_json(
                handler, 500, {"error": f"InternalError error: {type(e).__name__}: {e}"}
            )
        finally:
            if method != "Malformed":
                self._metrics.observe(
                    name, version, method, "rest", code.name, time.perf_counter() - start
                )

    def _read_json(self, handler: http.server.BaseHTTPRequestHandler) -> dict[str, Any]:
        length_header = handler.headers.get("Content-Length")
        if length_header is None:
            handler.close_connection = True
            raise InvalidArgumentError("Content-Length is required")
        try:
            length = int(length_header)
        except ValueError:
            handler.close_connection = True
            raise InvalidArgumentError("Bad Content-Length") from None
        if length > self._max_bytes:
            if length <= 4 * self._max_bytes:
                _discard(handler, length)  # read it so the client gets the answer, not a reset
            else:
                handler.close_connection = True  # far too large to read: drop the connection
            raise ResourceExhaustedError(
                f"Request body of {length} bytes exceeds the limit of {self._max_bytes} bytes"
            )
        raw = handler.rfile.read(length)
        try:
            body = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise InvalidArgumentError(f"JSON Parse error: {e}") from None
        if not isinstance(body, dict):
            raise InvalidArgumentError("The request body must be a JSON object")
        return body

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
