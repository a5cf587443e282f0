"""KServe logger sink: the InferenceService's request/response CloudEvents as PredictionLogs.

KServe's payload logger (kserve/kserve `pkg/logger/`, read at commit aaac4e294dae) runs in
the predictor's agent sidecar. For every REST request it queues the request body and, when the
predictor answered 200, the response body (`handler.go` ServeHTTP; non-200 answers are not
logged), and a worker POSTs each as a CloudEvent in binary mode (`worker.go`
sendHttpCloudEvent, `cloudevents.WithEncodingBinary`): the body is the payload as received,
`Content-Type` the request's, and these headers (CloudEvents HTTP binding: attribute `x` is
header `ce-x`):

- `ce-id`: the request's `Ce-Id` header, else a new UUID; the same for the request and its
  response (`handler.go` getOrCreateID): the pairing key here.
- `ce-type`: `org.kubeflow.serving.inference.request` or `...inference.response`
  (`worker.go` CEInferenceRequest / CEInferenceResponse).
- `ce-source`: the logger's source URI (`event.SetSource`); `ce-specversion`: `1.0`
  (`cloudevents.NewEvent(cloudevents.VersionV1)`).
- `ce-time`: when the request arrived / the response was received (`OccurrenceTime`).
- `ce-inferenceservicename`, `ce-namespace`, `ce-component`, `ce-endpoint` (`default` or
  `canary`), `ce-metadata` (JSON of the configured request headers), `ce-recordedtime`,
  and `ce-annotations` when set (`worker.go`, the `*Attr` constants).

The URL path is not sent, so the verb is told from the bodies (`records.verb_of_bodies`) and
the model is the InferenceService's name, which is what KServe's TF Serving runtime serves
(`--model_name={{.Name}}`). Sampling is by a hash of `ce-id`, so both halves of a pair agree
without holding unsampled ones. Pending halves are bounded in number and age.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import threading
import time
import zlib
from typing import Any

import tornado.httpserver
import tornado.netutil
import tornado.web
from prometheus_client import CollectorRegistry, Counter

from serving.front import records
from serving.front.log import RecordLog

logger = logging.getLogger(__name__)

REQUEST_TYPE = "org.kubeflow.serving.inference.request"
RESPONSE_TYPE = "org.kubeflow.serving.inference.response"
REQUIRED_HEADERS = ("ce-id", "ce-type", "ce-source", "ce-specversion")
SPEC_VERSION = "1.0"


@dataclasses.dataclass
class _Half:
    received: float
    body: bytes
    service: str
    endpoint: str


class Pairing:
    """Holds the first half of each sampled pair until the other arrives (bounded)."""

    def __init__(
        self, log: RecordLog, registry: CollectorRegistry, max_pending: int, max_age_s: float
    ) -> None:
        """Pairs into `log`; at most `max_pending` halves wait, none longer than `max_age_s`."""
        self._log = log
        self._rate = log.settings.sampling_rate
        self._max_pending = max_pending
        self._max_age_s = max_age_s
        self._pending: collections.OrderedDict[tuple[str, str], _Half] = collections.OrderedDict()
        self._lock = threading.Lock()
        self.unpaired = Counter(
            "kserve_sink_unpaired",
            "Events whose other half never came (evicted by age or count).",
            registry=registry,
        )

    def sampled(self, event_id: str) -> bool:
        """The same answer for both events of a pair (a hash of the id, not a random draw)."""
        return zlib.crc32(event_id.encode()) < self._rate * 2**32

    def add(self, event_id: str, kind: str, half: _Half) -> None:
        """Stores a half, or completes its pair and queues the record."""
        other_kind = RESPONSE_TYPE if kind == REQUEST_TYPE else REQUEST_TYPE
        with self._lock:
            self._evict(half.received)
            other = self._pending.pop((event_id, other_kind), None)
            if other is None:
                self._pending[(event_id, kind)] = half
                return
        request, response = (half, other) if kind == REQUEST_TYPE else (other, half)
        rate = self._rate

        def build() -> Any:
            verb = records.verb_of_bodies(request.body, response.body)
            return records.from_rest(
                request.service, None, "serving_default", verb, request.body, response.body, rate
            )

        self._log.offer(build)

    def _evict(self, now: float) -> None:
        while self._pending:
            key, oldest = next(iter(self._pending.items()))
            if len(self._pending) < self._max_pending and now - oldest.received < self._max_age_s:
                return
            del self._pending[key]
            self.unpaired.inc()

    def pending(self) -> int:
        """Halves waiting for their pair."""
        return len(self._pending)


class _EventHandler(tornado.web.RequestHandler):
    def initialize(self, pairing: Pairing) -> None:  # type: ignore[override]
        self.pairing = pairing

    def post(self, *_: str) -> None:
        headers = self.request.headers
        missing = [h for h in REQUIRED_HEADERS if not headers.get(h)]
        if headers.get("Content-Type", "").startswith("application/cloudevents"):
            self._refuse(415, "structured-mode CloudEvents are not read (KServe sends binary mode)")
            return
        if missing:
            self._refuse(
                400, f"not a binary-mode CloudEvent: missing header(s) {', '.join(missing)}"
            )
            return
        if headers["ce-specversion"] != SPEC_VERSION:
            self._refuse(400, f"ce-specversion {headers['ce-specversion']!r} is not {SPEC_VERSION}")
            return
        kind = headers["ce-type"]
        if kind not in (REQUEST_TYPE, RESPONSE_TYPE):
            self._refuse(400, f"ce-type {kind!r} is neither {REQUEST_TYPE} nor {RESPONSE_TYPE}")
            return
        event_id = headers["ce-id"]
        if self.pairing.sampled(event_id):
            half = _Half(
                time.monotonic(),
                self.request.body,
                headers.get("ce-inferenceservicename", ""),
                headers.get("ce-endpoint", ""),
            )
            if not half.service:
                self._refuse(400, "missing header ce-inferenceservicename (the model's name)")
                return
            self.pairing.add(event_id, kind, half)
        self.set_status(200)
        self.finish()

    def _refuse(self, status: int, message: str) -> None:
        self.set_status(status)
        self.finish({"error": message})


class _Health(tornado.web.RequestHandler):
    def get(self) -> None:
        self.finish({"status": "ok"})


def application(pairing: Pairing) -> tornado.web.Application:
    """The sink's HTTP app: CloudEvents POSTed to any path; `GET /healthz` for probes."""
    return tornado.web.Application(
        [(r"/healthz", _Health), (r"/(.*)", _EventHandler, {"pairing": pairing})]
    )


def serve(
    pairing: Pairing, host: str, port: int, max_body_bytes: int
) -> tuple[tornado.httpserver.HTTPServer, int]:
    """Listens on the current event loop; returns the server and its port (0 picks one)."""
    server = tornado.httpserver.HTTPServer(application(pairing), max_body_size=max_body_bytes)
    sockets = tornado.netutil.bind_sockets(port, host)
    server.add_sockets(sockets)
    return server, int(sockets[0].getsockname()[1])
