"""The front's REST side: every request forwarded to the backend's REST port, bodies as bytes.

Tornado serves the port and forwards with its HTTP client; bodies, status, reason and headers
pass unchanged (hop-by-hop headers excepted, RFC 9110 section 7.6.1). Only a sampled
`POST /v1/models/<m>[/versions/<v>|/labels/<l>]:(predict|classify|regress)` that was answered
200 is logged: its two bodies are queued and the writer thread decodes them
(`records.from_rest`), reading the signature's dtypes from the backend's metadata.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import threading
import time
import urllib.parse
import urllib.request
from typing import Any

import tornado.httpclient
import tornado.httpserver
import tornado.web

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


class _Proxy(tornado.web.RequestHandler):
    SUPPORTED_METHODS = ("GET", "HEAD", "POST", "DELETE", "PATCH", "PUT", "OPTIONS")

    def initialize(self, front: RestFront) -> None:  # type: ignore[override]
        self.front = front

    def set_default_headers(self) -> None:
        # Only the backend's headers go back (tornado adds Server, Content-Type, Date).
        for name in ("Server", "Content-Type", "Date"):
            self.clear_header(name)

    async def _forward(self) -> None:
        front, request = self.front, self.request
        headers = {k: v for k, v in request.headers.get_all() if k.lower() not in _HOP_BY_HOP}
        body = (
            request.body if (request.body or request.method in ("POST", "PUT", "PATCH")) else None
        )
        outgoing = tornado.httpclient.HTTPRequest(
            front.backend_url + request.uri,
            method=request.method,
            headers=headers,
            body=body,
            follow_redirects=False,
            decompress_response=False,
            allow_nonstandard_methods=True,
            request_timeout=front.timeout_s,
        )
        response = await front.client.fetch(outgoing, raise_error=False)
        if response.code == 599:  # No answer from the backend (refused, reset, timed out).
            self.set_status(503)
            self.set_header("Content-Type", "application/json")
            self.finish(json.dumps({"error": f"model server unreachable: {response.error}"}))
            return
        self.set_status(response.code, response.reason)
        for name, value in response.headers.get_all():
            if name.lower() not in _HOP_BY_HOP:
                self.add_header(name, value)
        answer = response.body or b""
        log = front.log
        if (
            log is not None
            and response.code == 200
            and request.method == "POST"
            and ":" in request.path
            and log.sample()
        ):
            build = rest_builder(
                request.uri or "",
                request.body,
                answer,
                log.settings.sampling_rate,
                front.signatures,
            )
            if build is not None:
                log.offer(build)
        self.finish(None if request.method == "HEAD" else answer)

    get = head = post = delete = patch = put = options = _forward  # type: ignore[assignment]

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        logger.error("REST front error on %s", self.request.uri, exc_info=(typ, value, tb))


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
        self.client: tornado.httpclient.AsyncHTTPClient

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
            self.client = tornado.httpclient.AsyncHTTPClient(
                force_instance=True,
                max_clients=self._max_clients,
                max_body_size=self._max_body_bytes * 4,
            )
            app = tornado.web.Application([(r".*", _Proxy, {"front": self})])
            server = tornado.httpserver.HTTPServer(
                app, max_body_size=self._max_body_bytes, idle_connection_timeout=60
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
            self.client.close()
            loop.stop()

        loop.call_soon_threadsafe(shutdown)
        if self._thread is not None:
            self._thread.join(10)
