"""HTTP robustness of the REST front end, over raw loopback sockets (bounded waits only)."""

from __future__ import annotations

import base64
import json
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from serving.rest import RestServer
from tests.serving.conftest import MAX_REQUEST_BYTES, MODEL, Target

pytestmark = pytest.mark.slow

TIMEOUT_S = 1.0  # idle/header and body timeouts of the server under test


@pytest.fixture(scope="module")
def port(target: Target) -> Iterator[int]:
    """A REST server with short timeouts over the embedded server's models."""
    if target.server is None:
        pytest.skip("needs the embedded server (timeouts are set here)")
    server = RestServer(
        "127.0.0.1",
        0,
        target.server.service,
        target.server.metrics,
        MAX_REQUEST_BYTES,
        lambda: True,
        max_workers=4,
        idle_timeout_s=TIMEOUT_S,
        body_timeout_s=TIMEOUT_S,
    )
    server.start()
    yield server.port
    server.stop(5.0)


def _connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _answer(sock: socket.socket) -> bytes:
    """Reads until the server closes the connection or 10 s pass."""
    data = b""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except (TimeoutError, ConnectionResetError):
            break
        if not chunk:
            break
        data += chunk
    return data


def _exchange(port: int, raw: bytes) -> bytes:
    with _connect(port) as sock:
        sock.sendall(raw)
        return _answer(sock)


def _closed_by_server(sock: socket.socket, within_s: float) -> bool:
    sock.settimeout(within_s)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def test_idle_connections_take_no_thread(port: int) -> None:
    before = threading.active_count()
    sockets = [_connect(port) for _ in range(64)]
    try:
        for sock in sockets:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n")  # a request that never completes
        time.sleep(0.3)
        assert threading.active_count() - before < 8
        answer = _exchange(port, b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 200"), answer[:100]
    finally:
        for sock in sockets:
            sock.close()


def test_slow_headers_are_cut_off(port: int) -> None:
    # Slowloris: a header line every 0.25 s keeps a per-read timeout from ever firing; the
    # headers as a whole must arrive within the idle timeout.
    with _connect(port) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n")
        closed = False
        for i in range(40):  # 10 s at most
            try:
                sock.sendall(f"X-Slow-{i}: x\r\n".encode())
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            if _closed_by_server(sock, 0.25):
                closed = True
                break
        assert closed


def test_slow_body_is_cut_off(port: int) -> None:
    with _connect(port) as sock:
        sock.sendall(
            f"POST /v1/models/{MODEL}:predict HTTP/1.1\r\nHost: t\r\n"
            "Content-Length: 100\r\n\r\n{".encode()
        )
        assert _closed_by_server(sock, 5 * TIMEOUT_S)


def test_chunked_body_is_served(port: int, examples: list[bytes]) -> None:
    body = json.dumps({"instances": [{"b64": base64.b64encode(e).decode()} for e in examples]})
    data = body.encode()
    chunks = b"".join(
        f"{len(data[i : i + 100]):x}\r\n".encode() + data[i : i + 100] + b"\r\n"
        for i in range(0, len(data), 100)
    )
    answer = _exchange(
        port,
        f"POST /v1/models/{MODEL}:predict HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n"
        "Connection: close\r\n\r\n".encode()
        + chunks
        + b"0\r\n\r\n",
    )
    head, _, payload = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), answer[:200]
    assert len(json.loads(payload)["predictions"]) == len(examples)


@pytest.mark.parametrize(
    "raw",
    [
        # HTTP/0.9: no version, so no status line could be expected back.
        b"GET /healthz\r\n\r\n",
        # A negative length must not slip past the body limit.
        f"POST /v1/models/{MODEL}:predict HTTP/1.1\r\nHost: t\r\n"
        "Content-Length: -1\r\n\r\n{}".encode(),
        # Issue 11: -100 was answered 500 by the http.server version.
        f"POST /v1/models/{MODEL}:predict HTTP/1.1\r\nHost: t\r\n"
        "Content-Length: -100\r\n\r\n{}".encode(),
    ],
    ids=["http-0.9", "negative-content-length", "content-length-minus-100"],
)
def test_bad_framing_is_refused_with_a_status_line(port: int, raw: bytes) -> None:
    answer = _exchange(port, raw)
    assert answer.startswith(b"HTTP/1.1 400"), answer[:200]


def test_ambiguous_content_length_is_refused(port: int, examples: list[bytes]) -> None:
    # Two different lengths: which one frames the body is ambiguous (request smuggling), even
    # when the first one frames a valid request.
    body = json.dumps({"instances": [{"b64": base64.b64encode(examples[0]).decode()}]}).encode()
    head = f"POST /v1/models/{MODEL}:predict HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
    valid = _exchange(port, f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body)
    assert valid.startswith(b"HTTP/1.1 200"), valid[:200]
    ambiguous = f"{head}Content-Length: {len(body)}\r\nContent-Length: 1\r\n\r\n".encode()
    answer = _exchange(port, ambiguous + body)
    assert answer.startswith(b"HTTP/1.1 400"), answer[:200]


def test_body_over_the_limit_is_resource_exhausted(port: int) -> None:
    size = MAX_REQUEST_BYTES + 1
    with _connect(port) as sock:
        sock.sendall(
            f"POST /v1/models/{MODEL}:predict HTTP/1.1\r\nHost: t\r\nContent-Length: {size}\r\n"
            "Connection: close\r\n\r\n".encode()
        )
        sock.sendall(b" " * size)
        answer = _answer(sock)
    assert answer.startswith(b"HTTP/1.1 429"), answer[:200]
    assert b"exceeds the limit" in answer
