"""The REST front's HTTP/1.1 layer over raw sockets, against a small backend in this process.

What the pod tests (test_front.py) cannot easily provoke: pipelined requests, chunked bodies
both ways, `Expect: 100-continue`, HEAD, answers delimited by the connection's end, malformed
and oversized requests, a backend that is slow, gone, or closed a pooled connection.
"""

from __future__ import annotations

import http.server
import json
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from serving.front.rest_proxy import RestFront

MAX_BODY = 1 << 16
TIMEOUT_S = 1.0


class _Backend(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass

    def _send(self, code: int, body: bytes, *fields: tuple[str, str]) -> None:
        self.send_response(code)
        for name, value in fields:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path == "/chunked":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for part in (b"hello ", b"world"):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
            self.wfile.write(b"0\r\n\r\n")
            return
        if self.path == "/until-close":
            self.send_response(200)
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(b"until close")
            self.close_connection = True
            return
        if self.path == "/slow":
            time.sleep(TIMEOUT_S * 2)
        seen = {"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()}}
        code = 404 if self.path == "/missing" else 200
        self._send(code, json.dumps(seen).encode(), ("X-Backend", "1"))

    do_HEAD = do_GET  # noqa: N815 (http.server names its handlers so)

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self._send(200, body)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # The slow answer's write fails: the front closed that connection at its timeout.


@pytest.fixture(scope="module")
def backend() -> Iterator[http.server.ThreadingHTTPServer]:
    server = _Server(("127.0.0.1", 0), _Backend)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def front(backend: http.server.ThreadingHTTPServer) -> Iterator[RestFront]:
    started = RestFront(
        "127.0.0.1",
        0,
        f"http://127.0.0.1:{backend.server_address[1]}",
        None,
        MAX_BODY,
        TIMEOUT_S,
        4,
    )
    started.start()
    yield started
    started.stop()


def exchange(port: int, data: bytes, answers: int = 1, bodiless: bool = False) -> bytes:
    """Sends `data`; reads until `answers` whole answers came or the connection closed
    (`bodiless`: answers to HEAD, whose Content-Length counts no body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5.0) as s:
        s.sendall(data)
        out = b""
        while _whole_answers(out, bodiless) < answers:
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
        return out


def _whole_answers(data: bytes, bodiless: bool) -> int:
    count, rest = 0, data
    while b"\r\n\r\n" in rest:
        head, rest = rest.split(b"\r\n\r\n", 1)
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length" and not bodiless:
                length = int(value)
        if b" 100 Continue" in head.split(b"\r\n")[0]:
            continue
        if len(rest) < length:
            break
        rest = rest[length:]
        count += 1
    return count


def test_pipelined_requests_are_answered_in_order_with_the_backends_status(
    front: RestFront,
) -> None:
    out = exchange(
        front.port,
        b"GET /a HTTP/1.1\r\nHost: x\r\nConnection: X-Hop\r\nX-Hop: 1\r\nX-End: 2\r\n\r\n"
        b"GET /missing HTTP/1.1\r\nHost: x\r\n\r\n",
        answers=2,
    )
    first, second = out.split(b"HTTP/1.1 ")[1:]
    assert first.startswith(b"200 OK\r\n") and b"X-Backend: 1\r\n" in first
    seen = json.loads(first.split(b"\r\n\r\n", 1)[1])
    assert seen["path"] == "/a"
    # Hop-by-hop fields (and those Connection names) stop at the front; the Host is the hop's.
    assert "x-hop" not in seen["headers"] and seen["headers"]["x-end"] == "2"
    assert seen["headers"]["host"] == front.pool.host_field.decode()
    assert second.startswith(b"404 Not Found\r\n")
    assert json.loads(second.split(b"\r\n\r\n", 1)[1])["path"] == "/missing"


def test_bodies_chunked_or_after_100_continue_reach_the_backend(front: RestFront) -> None:
    out = exchange(
        front.port,
        b"POST /p HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nTrailer-Field: 1\r\n\r\n",
    )
    assert out.startswith(b"HTTP/1.1 200 OK\r\n") and out.endswith(b"\r\n\r\nhello world")
    with socket.create_connection(("127.0.0.1", front.port), timeout=5) as s:
        s.sendall(
            b"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
        )
        assert s.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
        s.sendall(b"12345")
        answer = b""
        while not answer.endswith(b"12345"):
            answer += s.recv(1000)
        assert answer.startswith(b"HTTP/1.1 200 OK\r\n")


def test_a_client_that_shut_its_sending_side_still_gets_its_answers(front: RestFront) -> None:
    with socket.create_connection(("127.0.0.1", front.port), timeout=5) as s:
        s.sendall(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n")
        s.shutdown(socket.SHUT_WR)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    assert out.count(b"HTTP/1.1 200 OK\r\n") == 2 and b'"path": "/b"' in out


def test_answers_chunked_head_and_delimited_by_close_pass_through(front: RestFront) -> None:
    out = exchange(
        front.port,
        b"GET /chunked HTTP/1.1\r\nHost: x\r\n\r\nGET /until-close HTTP/1.1\r\nHost: x\r\n\r\n",
        answers=2,
    )
    first, second = out.split(b"HTTP/1.1 ")[1:]
    assert b"Content-Length: 11\r\n" in first and first.endswith(b"\r\n\r\nhello world")
    assert b"Transfer-Encoding" not in first
    assert second.startswith(b"200 OK\r\n") and second.endswith(b"\r\n\r\nuntil close")
    head = exchange(front.port, b"HEAD /a HTTP/1.1\r\nHost: x\r\n\r\n", bodiless=True)
    assert head.startswith(b"HTTP/1.1 200 OK\r\n") and head.endswith(b"\r\n\r\n")
    assert b"Content-Length: " in head  # the backend's, for a body it did not send
    kept = exchange(front.port, b"GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    assert b"Connection: keep-alive\r\n" in kept
    closed = exchange(front.port, b"GET /a HTTP/1.0\r\n\r\n")
    assert b"Connection: close\r\n" in closed


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"POST /p HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % (MAX_BODY + 1), b"413"),
        (b"POST /p HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n" % (MAX_BODY + 1), b"413"),
        (b"GET / HTTP/1.1\r\nBad Field: x\r\n\r\n", b"400"),
        (b"GET / HTTP/1.1\r\nX: 1\r\n folded\r\n\r\n", b"400"),
        (b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nxx", b"400"),
        (b"POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", b"400"),
        (b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", b"501"),
        (b"GET / HTTP/2.0\r\n\r\n", b"505"),
        (b"NOT A REQUEST\r\n\r\n", b"400"),
        (b"GET / HTTP/1.1\r\nX: " + b"x" * 70000 + b"\r\n\r\n", b"431"),
    ],
)
def test_requests_that_cannot_be_framed_are_refused_and_the_connection_closed(
    front: RestFront, request_bytes: bytes, status: bytes
) -> None:
    out = exchange(front.port, request_bytes, answers=2)
    assert out.startswith(b"HTTP/1.1 " + status + b" "), out[:200]
    assert b"Connection: close\r\n" in out and "error" in json.loads(out.split(b"\r\n\r\n")[1])


def test_a_backend_that_does_not_answer_in_time_is_a_503(front: RestFront) -> None:
    out = exchange(front.port, b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
    assert "model server unreachable" in json.loads(out.split(b"\r\n\r\n")[1])["error"]
    # The next call gets a fresh connection.
    assert exchange(front.port, b"GET /a HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 200 OK")


def test_a_backend_that_is_down_is_a_503() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens there once closed
    front = RestFront("127.0.0.1", 0, f"http://127.0.0.1:{port}", None, MAX_BODY, 5.0, 4)
    front.start()
    try:
        out = exchange(
            front.port, b"POST /v1/models/m:predict HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}"
        )
        assert out.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
        assert "Connection: close" not in out.decode()  # the client's connection stays usable
    finally:
        front.stop()


def test_a_pooled_connection_that_closed_is_not_used(front: RestFront) -> None:
    assert exchange(front.port, b"GET /a HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 200")
    for backend in list(front.pool._idle):
        assert backend.transport is not None
        front.loop.call_soon_threadsafe(backend.transport.close)
    time.sleep(0.1)
    assert exchange(front.port, b"GET /b HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 200")
