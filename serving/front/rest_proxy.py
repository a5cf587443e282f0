"""The front's REST side: every request forwarded to the backend's REST port, bodies as bytes.

A lean HTTP/1.1 pass-through on asyncio Protocol callbacks (one event loop, on its own thread):
only the request line and header fields are parsed (RFC 9112), the body is framed by its
Content-Length or chunked coding and forwarded as bytes over a pool of persistent connections
to the backend, whose answer is framed the same way. Tornado's HTTP server and client did the
same job with a coroutine and several futures per call, about 1 ms of Python per request.

Bodies, status, reason and headers pass unchanged (hop-by-hop headers excepted, RFC 9110
section 7.6.1; bodies are re-framed with a Content-Length). Requests on one connection are
answered in order, one at a time (pipelined requests wait in the buffer). No answer from the
backend (refused, reset, timed out) is a 503 `{"error": "model server unreachable: ..."}`; an
answer that is not HTTP is a 502. Only a sampled
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
from collections.abc import Callable
from typing import Any

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
# Header fields that belong to one hop (RFC 9110 section 7.6.1), and those the front sets itself
# on each hop (Host, the re-framed Content-Length). Names listed in a Connection field go too.
_HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"host",
        b"content-length",
    }
)
# Not forwarded either: the front answers `Expect: 100-continue` itself (it reads the whole body
# before it forwards anything).
_NOT_FORWARDED = _HOP_BY_HOP | {b"expect"}
# The limits tornado's HTTP server enforced for the front: a request head (request line and
# header fields) of at most 64 KiB, a connection closed after 60 s without a request.
MAX_HEAD_BYTES = 65536
IDLE_TIMEOUT_S = 60.0
# Pipelined bytes buffered while a request is at the backend, before reading pauses.
_PIPELINE_BYTES = 1 << 20
_MAX_CHUNK_LINE = 4096
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_REQUEST_LINE = re.compile(rb"([!#$%&'*+\-.^_`|~0-9A-Za-z]+) ([^ ]+) HTTP/(\d)\.(\d)")
_STATUS_LINE = re.compile(rb"HTTP/(\d)\.(\d) (\d{3})(?: (.*))?")
_HEX = re.compile(rb"[0-9A-Fa-f]+")
_WITH_BODY = frozenset({b"POST", b"PUT", b"PATCH"})

# A header field as received: (lower-case name, name, value).
Field = tuple[bytes, bytes, bytes]
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


class HttpError(Exception):
    """A message the front cannot frame or refuses: `code` answers it, the connection closes."""

    def __init__(self, code: int, reason: str, detail: str) -> None:
        """`detail` is the answer's `error` text."""
        super().__init__(detail)
        self.code = code
        self.reason = reason


def _head_end(buffer: bytearray) -> tuple[int, int]:
    """(end of the head's lines, start of the body), (-1, -1) while the head is incomplete.

    Lines end in CRLF; a bare LF is accepted as well (RFC 9112 section 2.2).
    """
    crlf = buffer.find(b"\n\r\n")
    lf = buffer.find(b"\n\n", 0, crlf if crlf >= 0 else len(buffer))
    if lf >= 0:
        return lf, lf + 2
    if crlf >= 0:
        return crlf, crlf + 3
    return -1, -1


def _fields(lines: list[bytes]) -> list[Field]:
    """Header field lines; obsolete line folding and whitespace before the colon are refused
    (RFC 9112 section 5)."""
    fields = []
    for raw in lines:
        line = raw.rstrip(b"\r")
        name, colon, value = line.partition(b":")
        if not colon or not _TOKEN.fullmatch(name):
            raise HttpError(400, "Bad Request", f"malformed header field {line[:100]!r}")
        fields.append((name.lower(), name, value.strip(b" \t")))
    return fields


def _values(fields: list[Field], lname: bytes) -> list[bytes]:
    """The comma-separated list values of a field (all its lines), lower-cased."""
    return [v.strip().lower() for n, _, value in fields if n == lname for v in value.split(b",")]


def _content_length(fields: list[Field]) -> int | None:
    """The Content-Length (equal repeated values accepted, RFC 9110 section 8.6), or None."""
    values = {
        v.strip() for n, _, value in fields if n == b"content-length" for v in value.split(b",")
    }
    if not values:
        return None
    if len(values) != 1 or not next(iter(values)).isdigit():
        raise HttpError(400, "Bad Request", f"invalid Content-Length {sorted(values)!r}")
    return int(next(iter(values)))


def _keep_alive(http10: bool, fields: list[Field]) -> bool:
    """Whether the connection stays open after this message (RFC 9112 section 9.3)."""
    connection = _values(fields, b"connection")
    return b"keep-alive" in connection if http10 else b"close" not in connection


def _error_answer(code: int, reason: str, error: str) -> tuple[list[bytes], bytes]:
    """The head (without its end) and body of the front's own JSON error answer."""
    body = json.dumps({"error": error}).encode()
    head = b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n" % (
        code,
        reason.encode(),
        len(body),
    )
    return [head], body


def _forwarded_fields(fields: list[Field], drop: frozenset[bytes]) -> list[bytes]:
    """The field lines that go on to the next hop: not hop-by-hop, nor named by Connection."""
    named = _values(fields, b"connection")
    if named:
        drop = drop | frozenset(named)
    return [b"%s: %s\r\n" % (name, value) for lname, name, value in fields if lname not in drop]


class _Chunked:
    """Incremental decoder of a chunked body (RFC 9112 section 7.1); trailers are dropped."""

    _SIZE, _DATA, _DATA_END, _TRAILER = range(4)

    def __init__(self, limit: int) -> None:
        """Refuses bodies over `limit` bytes (413)."""
        self.body = bytearray()
        self._limit = limit
        self._state = self._SIZE
        self._left = 0

    def feed(self, buffer: bytearray) -> bool:
        """Consumes what it can of `buffer` (deleting it); True once the body is complete."""
        pos, done = 0, False
        while not done:
            if self._state == self._DATA:
                take = min(self._left, len(buffer) - pos)
                self.body += buffer[pos : pos + take]
                pos += take
                self._left -= take
                if self._left:
                    break
                self._state = self._DATA_END
                continue
            eol = buffer.find(b"\n", pos)
            if eol < 0:
                if len(buffer) - pos > _MAX_CHUNK_LINE:
                    raise HttpError(400, "Bad Request", "chunk line too long")
                break
            line = bytes(buffer[pos:eol]).rstrip(b"\r")
            pos = eol + 1
            if self._state == self._SIZE:
                size = line.split(b";", 1)[0].strip(b" \t")
                if not _HEX.fullmatch(size):
                    raise HttpError(400, "Bad Request", f"invalid chunk size {size[:20]!r}")
                self._left = int(size, 16)
                if len(self.body) + self._left > self._limit:
                    raise HttpError(413, "Content Too Large", "body too large")
                self._state = self._DATA if self._left else self._TRAILER
            elif self._state == self._DATA_END:
                if line:
                    raise HttpError(400, "Bad Request", "chunk data not followed by CRLF")
                self._state = self._SIZE
            elif not line:  # the empty line that ends the trailer section
                done = True
        del buffer[:pos]
        return done


@dataclasses.dataclass
class Request:
    """One client request, read whole."""

    method: bytes
    target: bytes
    fields: list[Field]
    body: bytes
    keep_alive: bool
    http10: bool

    def to_backend(self, host: bytes) -> bytes:
        """The request as sent to the backend: HTTP/1.1, its Host, the body re-framed."""
        parts = [b"%s %s HTTP/1.1\r\nHost: %s\r\n" % (self.method, self.target, host)]
        parts += _forwarded_fields(self.fields, _NOT_FORWARDED)
        if self.body or self.method in _WITH_BODY:
            parts.append(b"Content-Length: %d\r\n" % len(self.body))
        parts.append(b"\r\n")
        parts.append(self.body)
        return b"".join(parts)


@dataclasses.dataclass
class Answer:
    """The backend's answer, as received (the body de-chunked)."""

    code: int
    reason: bytes
    fields: list[Field]
    body: bytes


class BadAnswerError(Exception):
    """The backend's bytes are no HTTP/1.1 answer the front can frame."""


# How a backend connection's exchange ends: the answer, or why there is none.
Done = Callable[[Answer | None, BaseException | None], None]


class _Backend(asyncio.Protocol):
    """One persistent connection to the backend, one exchange at a time."""

    def __init__(self, pool: BackendPool) -> None:
        self._pool = pool
        self.transport: asyncio.Transport | None = None
        self.open = False
        self._buffer = bytearray()
        self._done: Done | None = None
        self._request = b""
        self._reused = False
        self._received = False
        self._head_request = False
        self._timer: asyncio.TimerHandle | None = None
        self._answer: Answer | None = None
        self._length: int | None = None  # body bytes expected; None: chunked or until close
        self._chunked: _Chunked | None = None
        self._keep_alive = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.open = True

    def exchange(self, request: bytes, head_request: bool, done: Done, reused: bool) -> None:
        """Sends `request`; `done` gets the answer or the error."""
        assert self.transport is not None
        self._done, self._request, self._reused = done, request, reused
        self._head_request, self._received, self._answer = head_request, False, None
        self._timer = self._pool.loop.call_later(self._pool.timeout_s, self._expire)
        self.transport.write(request)

    def data_received(self, data: bytes) -> None:
        if self._done is None:  # Bytes nobody asked for: the connection is out of step.
            assert self.transport is not None
            self.transport.abort()
            return
        self._received = True
        self._buffer += data
        try:
            answer = self._read()
        except HttpError as e:
            self._fail(BadAnswerError(str(e)))
            return
        if answer is not None:
            self._complete(answer)

    def connection_lost(self, exc: Exception | None) -> None:
        self.open = False
        if self._done is None:
            return
        answer = self._answer
        if answer is not None and self._length is None and self._chunked is None:
            # A body delimited by the end of the connection (RFC 9112 section 6.3, rule 8).
            answer.body = bytes(self._buffer)
            self._keep_alive = False
            self._complete(answer)
        elif self._reused and not self._received:
            # Closed by the backend while idle (the request crossed its close): a fresh
            # connection gets it, as nothing of it was answered.
            self._finish()
            self._pool.send(self._request, self._head_request, self._done_and_clear())
        else:
            self._fail(exc or ConnectionResetError("the model server closed the connection"))

    def _done_and_clear(self) -> Done:
        done = self._done
        assert done is not None
        self._done = None
        return done

    def _expire(self) -> None:
        # Never retried: the backend may still be working on it.
        self._fail(asyncio.TimeoutError(f"no answer in {self._pool.timeout_s} s"))

    def _finish(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _fail(self, error: BaseException) -> None:
        self._finish()
        done = self._done_and_clear()
        self.open = False
        if self.transport is not None:
            self.transport.abort()
        done(None, error)

    def _complete(self, answer: Answer) -> None:
        self._finish()
        done = self._done_and_clear()
        self._answer, self._chunked = None, None
        if self._keep_alive and not self._buffer and self.open:
            self._pool.release(self)
        else:
            self.open = False
            assert self.transport is not None
            self.transport.close()
        done(answer, None)

    def _read(self) -> Answer | None:
        """The answer once it is whole (HttpError: not HTTP)."""
        buffer = self._buffer
        while self._answer is None:
            end, start = _head_end(buffer)
            if end < 0:
                if len(buffer) > MAX_HEAD_BYTES:
                    raise HttpError(502, "Bad Gateway", "answer head too large")
                return None
            lines = bytes(buffer[:end]).split(b"\n")
            status = _STATUS_LINE.fullmatch(lines[0].rstrip(b"\r"))
            if status is None:
                raise HttpError(502, "Bad Gateway", f"no status line: {lines[0][:100]!r}")
            del buffer[:start]
            code = int(status[3])
            if 100 <= code < 200:
                continue  # An interim answer (e.g. 100 Continue): the final one follows.
            fields = _fields(lines[1:])
            self._keep_alive = _keep_alive(status[1] == b"1" and status[2] == b"0", fields)
            self._answer = Answer(code, status[4] or b"", fields, b"")
            self._length, self._chunked = None, None
            if self._head_request or code in (204, 304):
                self._length = 0
            elif codings := _values(fields, b"transfer-encoding"):
                if codings[-1] != b"chunked":
                    self._keep_alive = False  # Read until the connection closes.
                else:
                    self._chunked = _Chunked(self._pool.max_body_bytes)
            else:
                self._length = _content_length(fields)
                if self._length is None:
                    self._keep_alive = False
                elif self._length > self._pool.max_body_bytes:
                    raise HttpError(502, "Bad Gateway", "answer too large")
        answer = self._answer
        if self._chunked is not None:
            if not self._chunked.feed(buffer):
                return None
            answer.body = bytes(self._chunked.body)
        elif self._length is not None:
            if len(buffer) < self._length:
                return None
            answer.body = bytes(buffer[: self._length])
            del buffer[: self._length]
        else:
            if len(buffer) > self._pool.max_body_bytes:
                raise HttpError(502, "Bad Gateway", "answer too large")
            return None  # Until the connection closes.
        return answer


class BackendPool:
    """Persistent HTTP/1.1 connections to the backend: idle ones are reused; one the backend
    closed while idle is replaced, when nothing of the answer was read from it."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        url: str,
        max_idle: int,
        max_body_bytes: int,
        timeout_s: float,
    ) -> None:
        """Connects to `url` (http://host:port) on demand."""
        parts = urllib.parse.urlsplit(url)
        if parts.scheme != "http" or not parts.hostname or not parts.port:
            raise ValueError(f"backend REST URL must be http://host:port, got {url!r}")
        self.loop = loop
        self.host, self.port = parts.hostname, parts.port
        self.host_field = f"{self.host}:{self.port}".encode()
        self.max_body_bytes = max_body_bytes
        self.timeout_s = timeout_s
        self._idle: list[_Backend] = []
        self._max_idle = max_idle
        self._connecting: set[asyncio.Task[None]] = set()

    def send(self, request: bytes, head_request: bool, done: Done) -> None:
        """Sends one request; `done` gets the answer, or the OSError/TimeoutError/BadAnswerError."""
        while self._idle:
            backend = self._idle.pop()
            if backend.open:
                backend.exchange(request, head_request, done, reused=True)
                return
        task = self.loop.create_task(self._connect(request, head_request, done))
        self._connecting.add(task)
        task.add_done_callback(self._connecting.discard)

    async def _connect(self, request: bytes, head_request: bool, done: Done) -> None:
        try:
            _, backend = await asyncio.wait_for(
                self.loop.create_connection(lambda: _Backend(self), self.host, self.port),
                timeout=self.timeout_s,
            )
        except (OSError, asyncio.TimeoutError) as e:
            done(None, e)
            return
        backend.exchange(request, head_request, done, reused=False)

    def release(self, backend: _Backend) -> None:
        """Keeps a connection whose exchange ended cleanly, up to `max_idle`."""
        if len(self._idle) < self._max_idle:
            self._idle.append(backend)
        elif backend.transport is not None:
            backend.transport.close()

    def close(self) -> None:
        """Closes the idle connections."""
        while self._idle:
            backend = self._idle.pop()
            if backend.transport is not None:
                backend.transport.close()


class _Client(asyncio.Protocol):
    """One client connection: requests read in order, each forwarded and answered in turn."""

    def __init__(self, front: RestFront) -> None:
        self._front = front
        self._loop = front.loop
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._head: Request | None = None  # read, its body awaited
        self._length = 0
        self._chunked: _Chunked | None = None
        self._busy = False  # a request is at the backend
        self._closed = False
        self._eof = False  # the client sent all it will send (it may still read)
        self._paused = False
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._front.clients.add(self)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        # An answer still at the backend is dropped when it comes (the backend call runs on:
        # its connection stays usable).
        self._closed = True
        self._front.clients.discard(self)
        if self._timer is not None:
            self._timer.cancel()

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if not self._busy:
            self._advance()
        elif not self._paused and len(self._buffer) > _PIPELINE_BYTES:
            assert self._transport is not None
            self._transport.pause_reading()
            self._paused = True

    def eof_received(self) -> bool:
        # A client may shut its sending side after its request (HTTP/1.0 style): answer what
        # it sent, then close. Without a request to answer, close now.
        self._eof = True
        return self._busy or bool(self._buffer)

    def close(self) -> None:
        """Closes the connection (the front stops)."""
        if self._transport is not None:
            self._transport.close()

    def _arm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._loop.call_later(IDLE_TIMEOUT_S, self.close)

    def _advance(self) -> None:
        try:
            request = self._read()
            if request is None:
                if self._eof:  # The rest of a request will not come.
                    self.close()
                else:
                    self._arm()
                return
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            self._busy = True
            self._front.forward(request, self)
        except HttpError as e:
            self._refuse(e.code, e.reason, str(e))
        except Exception:  # Request boundary: answered, logged, the connection closed.
            logger.exception("REST front: request failed")
            self._refuse(500, "Internal Server Error", "the request-log front failed")

    def _read(self) -> Request | None:
        """The next request once it is whole (HttpError: refused)."""
        buffer = self._buffer
        head = self._head
        if head is None:
            if buffer[:1] in (b"\r", b"\n"):  # Empty lines before a request line are ignored.
                del buffer[: len(buffer) - len(buffer.lstrip(b"\r\n"))]
            if not buffer:
                return None
            end, start = _head_end(buffer)
            if end < 0 or end > MAX_HEAD_BYTES:
                if end < 0 and len(buffer) <= MAX_HEAD_BYTES:
                    return None
                raise HttpError(431, "Request Header Fields Too Large", "request head too large")
            lines = bytes(buffer[:end]).split(b"\n")
            line = _REQUEST_LINE.fullmatch(lines[0].rstrip(b"\r"))
            if line is None:
                raise HttpError(400, "Bad Request", f"malformed request line {lines[0][:100]!r}")
            if line[3] != b"1":
                raise HttpError(505, "HTTP Version Not Supported", "HTTP/1.x only")
            del buffer[:start]
            fields = _fields(lines[1:])
            http10 = line[4] == b"0"
            head = Request(line[1], line[2], fields, b"", _keep_alive(http10, fields), http10)
            self._framing(head)
            self._head = head
            if (
                not http10
                and (self._chunked is not None or len(buffer) < self._length)
                and b"100-continue" in _values(fields, b"expect")
            ):
                assert self._transport is not None
                self._transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        if self._chunked is not None:
            if not self._chunked.feed(buffer):
                return None
            head.body = bytes(self._chunked.body)
            self._chunked = None
        else:
            if len(buffer) < self._length:
                return None
            head.body = bytes(buffer[: self._length])
            del buffer[: self._length]
        self._head = None
        return head

    def _framing(self, head: Request) -> None:
        """How the request's body is delimited (RFC 9112 section 6.3)."""
        limit = self._front.max_body_bytes
        codings = _values(head.fields, b"transfer-encoding")
        length = _content_length(head.fields)
        self._length, self._chunked = 0, None
        if codings:
            if head.http10 or length is not None:
                raise HttpError(400, "Bad Request", "Transfer-Encoding with HTTP/1.0 or a length")
            if codings != [b"chunked"]:
                raise HttpError(501, "Not Implemented", f"Transfer-Encoding {codings!r}")
            self._chunked = _Chunked(limit)
        elif length is not None:
            if length > limit:
                raise HttpError(413, "Content Too Large", f"body over {limit} bytes")
            self._length = length

    def answer(self, request: Request, answer: Answer) -> None:
        """Writes the backend's answer; then reads the next request."""
        head_request = request.method == b"HEAD"
        # A HEAD answer's Content-Length is the backend's (there is no body to count).
        drop = _HOP_BY_HOP - {b"content-length"} if head_request else _HOP_BY_HOP
        parts = [b"HTTP/1.1 %d %s\r\n" % (answer.code, answer.reason)]
        parts += _forwarded_fields(answer.fields, drop)
        body = answer.body
        if head_request or answer.code in (204, 304):
            body = b""
        else:
            parts.append(b"Content-Length: %d\r\n" % len(body))
        self._write(parts, body, request.keep_alive, request.http10)

    def fail(self, request: Request, code: int, reason: str, error: str) -> None:
        """Answers with the front's own JSON error; then reads the next request."""
        parts, body = _error_answer(code, reason, error)
        if request.method == b"HEAD":
            body = b""
        self._write(parts, body, request.keep_alive, request.http10)

    def _refuse(self, code: int, reason: str, error: str) -> None:
        """Answers a request that cannot be read, and closes (its framing is lost)."""
        self._head = None
        parts, body = _error_answer(code, reason, error)
        self._write(parts, body, False, False)

    def _write(self, parts: list[bytes], body: bytes, keep_alive: bool, http10: bool) -> None:
        self._busy = False
        transport = self._transport
        if self._closed or transport is None:
            return
        if not keep_alive:
            parts.append(b"Connection: close\r\n")
        elif http10:
            parts.append(b"Connection: keep-alive\r\n")
        parts.append(b"\r\n")
        parts.append(body)
        transport.write(b"".join(parts))
        if not keep_alive:
            self._closed = True
            transport.close()
            return
        if self._paused:
            self._paused = False
            transport.resume_reading()
        if self._buffer or self._eof:
            self._advance()  # A pipelined request, or the end of the client's requests.
        else:
            self._arm()


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
        """Serves `address:port`, forwarding to `backend_url` (e.g. http://127.0.0.1:8511).

        `max_body_bytes` bounds request bodies (answers: four times that), `timeout_s` each
        backend exchange, `max_clients` the idle backend connections kept.
        """
        self._address, self._requested_port = address, port
        self.backend_url = backend_url.rstrip("/")
        self.log = log
        self.timeout_s = timeout_s
        self.signatures = SignatureCache(self.backend_url)
        self.max_body_bytes = max_body_bytes
        self._max_clients = max_clients
        self._ready = threading.Event()
        self.loop = asyncio.new_event_loop()
        self.pool = BackendPool(
            self.loop, self.backend_url, max_clients, max_body_bytes * 4, timeout_s
        )
        self.clients: set[_Client] = set()
        self._server: asyncio.AbstractServer | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    def forward(self, request: Request, client: _Client) -> None:
        """Sends `request` on; its answer (or a 503) goes back to `client`."""

        def done(answer: Answer | None, error: BaseException | None) -> None:
            if answer is None:
                if isinstance(error, BadAnswerError):
                    logger.warning("REST front: the model server's answer is not HTTP: %s", error)
                    client.fail(request, 502, "Bad Gateway", f"model server answer: {error}")
                else:  # Refused, reset, timed out.
                    logger.warning("REST front: no answer from the model server: %r", error)
                    client.fail(
                        request, 503, "Service Unavailable", f"model server unreachable: {error!r}"
                    )
                return
            log = self.log
            if (
                log is not None
                and answer.code == 200
                and request.method == b"POST"
                and log.sample()
            ):
                self._offer(log, request, answer)
            client.answer(request, answer)

        self.pool.send(request.to_backend(self.pool.host_field), request.method == b"HEAD", done)

    def _offer(self, log: RecordLog, request: Request, answer: Answer) -> None:
        path = request.target.decode("latin-1")
        build = rest_builder(
            path, request.body, answer.body, log.settings.sampling_rate, self.signatures
        )
        if build is not None:
            log.offer(build)

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
        loop = self.loop
        asyncio.set_event_loop(loop)
        try:
            server = loop.run_until_complete(
                loop.create_server(
                    lambda: _Client(self),
                    self._address,
                    self._requested_port,
                    backlog=1024,
                    reuse_address=True,
                )
            )
            self._server = server
            self.port = server.sockets[0].getsockname()[1]
        except Exception:  # Thread boundary: start() reports it.
            logger.exception("REST front failed to start")
            self._ready.set()
            return
        self._ready.set()
        loop.run_forever()
        loop.close()

    def stop(self) -> None:
        """Stops accepting, closes the connections and ends the loop."""
        loop, server = self.loop, self._server
        if server is None or loop.is_closed():
            return

        def shutdown() -> None:
            server.close()
            for client in list(self.clients):
                client.close()
            self.pool.close()
            loop.stop()

        loop.call_soon_threadsafe(shutdown)
        if self._thread is not None:
            self._thread.join(10)
