"""The front's REST side: every request forwarded to the backend's REST port, bodies as bytes.

Tornado's HTTP/1.1 layer serves the port (no RequestHandler: a proxy needs none of it) and
forwards over keep-alive connections to the backend; bodies, status, reason and headers pass
unchanged (hop-by-hop headers excepted, RFC 9110 section 7.6.1). Only a sampled
`POST /v1/models/<m>[/versions/<v>|/labels/<l>]:(predict|classify|regress)` that was answered
200 is logged: its two bodies are queued and the writer thread decodes them
(`records.from_rest`), reading the signature's dtypes from the backend's metadata.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import re
import threading
import time
import urllib.parse
import urllib.request
from typing import Any

import tornado.http1connection
import tornado.httpserver
import tornado.httputil
import tornado.iostream
import tornado.tcpclient

from serving.front import records
from serving.front.log import Builder, RecordLog

logger = logging.getLogger(__name__)

# TF Serving's prediction route (http_rest_api_handler.cc kPredictionApiRegex), matched whole
# and case-insensitively as there.
_PREDICTION = re.compile(
    r"/v1/models/(?P<model>[^/:]+)(?:/versions/(?P<version>\d+)|/labels/(?P<label>[^/:]+))?"
    r":(?P<verb>predict|classify|regress)",
    re.IGNORECASE,
)
_HOP_BY_HOP = frozenset(
    h.lower()
    for h in (
        "Connection",
        "Keep-Alive",
        "Proxy-Authenticate",
        "Proxy-Authorization",
        "Proxy-Connection",
        "TE",
        "Trailer",
        "Transfer-Encoding",
        "Upgrade",
        "Host",
        "Content-Length",
    )
)
# How long the writer thread trusts a model's metadata (a rollout changes the version).
METADATA_TTL_S = 30.0
METADATA_TIMEOUT_S = 2.0


class SignatureCache:
    """Signatures and versions from the backend's REST metadata, fetched by the writer thread."""

    def __init__(self, backend_url: str) -> None:
        """Reads `<backend_url>/v1/models/<m>[/versions/<v>|/labels/<l>]/metadata`."""
        self._backend = backend_url.rstrip("/")
        self._cache: dict[str, tuple[float, dict[str, Any]]] = {}

    def lookup(
        self, model: str, version: str | None, label: str | None, signature_name: str
    ) -> tuple[int | None, records.Signature]:
        """(version that answers, the signature's inputs and outputs)."""
        path = "/v1/models/" + urllib.parse.quote(model, safe="")
        if version:
            path += f"/versions/{version}"
        elif label:
            path += "/labels/" + urllib.parse.quote(label, safe="")
        path += "/metadata"
        cached = self._cache.get(path)
        if cached is None or time.monotonic() - cached[0] > METADATA_TTL_S:
            with urllib.request.urlopen(self._backend + path, timeout=METADATA_TIMEOUT_S) as r:
                cached = (time.monotonic(), json.loads(r.read()))
            self._cache[path] = cached
        metadata = cached[1]
        answered = metadata.get("model_spec", {}).get("version")
        signature = records.Signature.from_metadata_json(metadata, signature_name)
        return (int(answered) if answered is not None else None), signature


def rest_builder(
    path: str,
    request_body: bytes,
    response_body: bytes,
    rate: float,
    signatures: SignatureCache,
) -> Builder | None:
    """What the writer thread runs to log one answered REST call; None if it is not logged."""
    match = _PREDICTION.fullmatch(urllib.parse.urlsplit(path).path)
    if match is None:
        return None
    model = urllib.parse.unquote(match["model"])
    label = urllib.parse.unquote(match["label"]) if match["label"] else None
    verb = match["verb"].lower()

    def build() -> Any:
        body_name = json.loads(request_body).get("signature_name")
        name = body_name if isinstance(body_name, str) and body_name else "serving_default"
        # REST answers do not name the version: the backend's metadata for the same URL does.
        version, signature = signatures.lookup(model, match["version"], label, name)
        return records.from_rest(
            model,
            version,
            name,
            verb,
            request_body,
            response_body,
            rate,
            signature if verb == "predict" else None,
        )

    return build


@dataclasses.dataclass
class BackendAnswer:
    """The backend's answer, as received."""

    code: int
    reason: str
    headers: tornado.httputil.HTTPHeaders
    body: bytes


class _Collect(tornado.httputil.HTTPMessageDelegate):
    def __init__(self) -> None:
        self.start: tornado.httputil.ResponseStartLine | None = None
        self.headers = tornado.httputil.HTTPHeaders()
        self.chunks: list[bytes] = []

    def headers_received(
        self,
        start_line: tornado.httputil.RequestStartLine | tornado.httputil.ResponseStartLine,
        headers: tornado.httputil.HTTPHeaders,
    ) -> None:
        assert isinstance(start_line, tornado.httputil.ResponseStartLine)
        self.start, self.headers = start_line, headers

    def data_received(self, chunk: bytes) -> None:
        self.chunks.append(chunk)


class BackendPool:
    """Keep-alive HTTP/1.1 connections to the backend (tornado's HTTP client opens one per
    request, which tripled the front's added latency): idle connections are reused; a reused
    one the backend closed meanwhile is replaced once, before anything was read from it."""

    def __init__(self, url: str, max_idle: int, max_body_bytes: int, timeout_s: float) -> None:
        """Connects to `url` (http://host:port) on demand."""
        parts = urllib.parse.urlsplit(url)
        if parts.scheme != "http" or not parts.hostname or not parts.port:
            raise ValueError(f"backend REST URL must be http://host:port, got {url!r}")
        self.host, self.port = parts.hostname, parts.port
        self._idle: list[tornado.iostream.IOStream] = []
        self._max_idle = max_idle
        self._timeout_s = timeout_s
        self._params = tornado.http1connection.HTTP1ConnectionParameters(
            no_keep_alive=False, decompress=False, max_body_size=max_body_bytes
        )
        self._tcp = tornado.tcpclient.TCPClient()

    async def fetch(
        self, method: str, uri: str, headers: tornado.httputil.HTTPHeaders, body: bytes | None
    ) -> BackendAnswer:
        """Sends one request and reads its answer (OSError/TimeoutError when there is none)."""
        while self._idle:
            stream = self._idle.pop()
            if stream.closed():
                continue
            try:
                return await self._exchange(stream, method, uri, headers, body)
            except tornado.iostream.StreamClosedError:
                continue  # Closed by the backend while idle: try a fresh connection.
        stream = await asyncio.wait_for(
            self._tcp.connect(self.host, self.port), timeout=self._timeout_s
        )
        return await self._exchange(stream, method, uri, headers, body)

    async def _exchange(
        self,
        stream: tornado.iostream.IOStream,
        method: str,
        uri: str,
        headers: tornado.httputil.HTTPHeaders,
        body: bytes | None,
    ) -> BackendAnswer:
        connection = tornado.http1connection.HTTP1Connection(stream, True, self._params)
        headers = tornado.httputil.HTTPHeaders(headers)
        headers["Host"] = f"{self.host}:{self.port}"
        if body is not None:
            headers["Content-Length"] = str(len(body))
        collect = _Collect()
        expired: list[bool] = []

        def expire() -> None:
            expired.append(True)
            stream.close()

        try:
            # Head and body in one write, without Nagle's delay (the answer is awaited).
            stream.set_nodelay(True)
            connection.write_headers(
                tornado.httputil.RequestStartLine(method, uri, "HTTP/1.1"), headers, body or None
            )
            connection.finish()
            # A timer closing the stream, rather than asyncio.wait_for's extra task per call.
            timer = asyncio.get_running_loop().call_later(self._timeout_s, expire)
            try:
                open_after = await connection.read_response(collect)
            finally:
                timer.cancel()
        except tornado.iostream.StreamClosedError:
            stream.close()
            if expired:  # Never retried: the backend may still be working on it.
                raise asyncio.TimeoutError(f"no answer in {self._timeout_s} s") from None
            raise
        except BaseException:
            stream.close()
            raise
        if collect.start is None:
            stream.close()
            raise tornado.iostream.StreamClosedError()
        keep = (
            open_after
            and collect.headers.get("Connection", "").lower() != "close"
            and len(self._idle) < self._max_idle
        )
        if keep:
            self._idle.append(stream)
        else:
            stream.close()
        return BackendAnswer(
            collect.start.code, collect.start.reason, collect.headers, b"".join(collect.chunks)
        )

    def close(self) -> None:
        """Closes the idle connections."""
        while self._idle:
            self._idle.pop().close()


class _Exchange(tornado.httputil.HTTPMessageDelegate):
    """One client request: collected, forwarded, answered (tornado's HTTP layer without its
    RequestHandler machinery, which cost a third of the front's time per call)."""

    def __init__(self, front: RestFront, connection: tornado.httputil.HTTPConnection) -> None:
        self.front = front
        self.connection = connection
        self.start: tornado.httputil.RequestStartLine | None = None
        self.headers = tornado.httputil.HTTPHeaders()
        self.chunks: list[bytes] = []
        self.task: asyncio.Future[None] | None = None

    def headers_received(
        self,
        start_line: tornado.httputil.RequestStartLine | tornado.httputil.ResponseStartLine,
        headers: tornado.httputil.HTTPHeaders,
    ) -> None:
        assert isinstance(start_line, tornado.httputil.RequestStartLine)
        self.start, self.headers = start_line, headers

    def data_received(self, chunk: bytes) -> None:
        self.chunks.append(chunk)

    def finish(self) -> None:
        self.task = asyncio.ensure_future(self._forward())
        self.task.add_done_callback(_report)

    def on_connection_close(self) -> None:
        self.chunks = []

    async def _forward(self) -> None:
        front, start = self.front, self.start
        assert start is not None
        headers = tornado.httputil.HTTPHeaders()
        for name, value in self.headers.get_all():
            if name.lower() not in _HOP_BY_HOP:
                headers.add(name, value)
        body = b"".join(self.chunks)
        sent = body if (body or start.method in ("POST", "PUT", "PATCH")) else None
        try:
            response = await front.pool.fetch(start.method, start.path, headers, sent)
        except (OSError, asyncio.TimeoutError, tornado.iostream.StreamClosedError) as e:
            # No answer from the backend (refused, reset, timed out).
            logger.warning("REST front: no answer from the model server: %r", e)
            error = json.dumps({"error": f"model server unreachable: {e!r}"}).encode()
            self._answer(
                503,
                "Service Unavailable",
                tornado.httputil.HTTPHeaders({"Content-Type": "application/json"}),
                error,
                start.method,
            )
            return
        answer_headers = tornado.httputil.HTTPHeaders()
        for name, value in response.headers.get_all():
            if name.lower() not in _HOP_BY_HOP or (
                start.method == "HEAD" and name.lower() == "content-length"
            ):
                answer_headers.add(name, value)
        log = front.log
        if log is not None and response.code == 200 and start.method == "POST" and log.sample():
            build = rest_builder(
                start.path, body, response.body, log.settings.sampling_rate, front.signatures
            )
            if build is not None:
                log.offer(build)
        self._answer(response.code, response.reason, answer_headers, response.body, start.method)

    def _answer(
        self,
        code: int,
        reason: str,
        headers: tornado.httputil.HTTPHeaders,
        body: bytes,
        method: str,
    ) -> None:
        if method != "HEAD" and code not in (204, 304) and not 100 <= code < 200:
            headers["Content-Length"] = str(len(body))
        else:
            body = b""
        try:
            self.connection.write_headers(
                tornado.httputil.ResponseStartLine("HTTP/1.1", code, reason), headers, body or None
            )
            self.connection.finish()
        except tornado.iostream.StreamClosedError:
            pass  # The client went away; nothing to answer.


def _report(task: asyncio.Future[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error("REST front: call failed", exc_info=task.exception())


class _Router(tornado.httputil.HTTPServerConnectionDelegate):
    def __init__(self, front: RestFront) -> None:
        self.front = front

    def start_request(
        self, server_conn: object, request_conn: tornado.httputil.HTTPConnection
    ) -> tornado.httputil.HTTPMessageDelegate:
        return _Exchange(self.front, request_conn)


class RestFront:
    """The REST proxy on its own thread and event loop."""

    def __init__(
        self,
        address: str,
        port: int,
        backend_url: str,
        log: RecordLog | None,
        max_body_bytes: int,
        timeout_s: float,
        max_clients: int,
    ) -> None:
        """Serves `address:port`, forwarding to `backend_url` (e.g. http://127.0.0.1:8511)."""
        self._address, self._requested_port = address, port
        self.backend_url = backend_url.rstrip("/")
        self.log = log
        self.timeout_s = timeout_s
        self.signatures = SignatureCache(self.backend_url)
        self._max_body_bytes = max_body_bytes
        self._max_clients = max_clients
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: tornado.httpserver.HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.port = 0
        self.pool: BackendPool

    def start(self) -> None:
        """Starts serving; returns once the port is bound."""
        self._thread = threading.Thread(target=self._run, name="front-rest", daemon=True)
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError("the REST front did not start in 30 s")
        if not self.port:
            raise RuntimeError(
                f"the REST front could not bind {self._address}:{self._requested_port}"
            )

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._loop = loop
        try:
            self.pool = BackendPool(
                self.backend_url, self._max_clients, self._max_body_bytes * 4, self.timeout_s
            )
            server = tornado.httpserver.HTTPServer(
                _Router(self), max_body_size=self._max_body_bytes, idle_connection_timeout=60
            )
            server.listen(self._requested_port, self._address, backlog=1024)
            self._server = server
            self.port = next(iter(server._sockets.values())).getsockname()[1]
        except Exception:  # Thread boundary: start() reports it.
            logger.exception("REST front failed to start")
            self._ready.set()
            return
        self._ready.set()
        loop.run_forever()
        loop.close()

    def stop(self) -> None:
        """Stops accepting and ends the loop."""
        loop, server = self._loop, self._server
        if loop is None or server is None:
            return

        def shutdown() -> None:
            server.stop()
            self.pool.close()
            loop.stop()

        loop.call_soon_threadsafe(shutdown)
        if self._thread is not None:
            self._thread.join(10)
