"""The one per-request wrapper of both transports: drain, in-flight gauge, metrics, span, status.

gRPC (`grpc_service`) and REST (`rest`) each decode their request, then hand the handling to
`RequestScope.run`, which admits the call (or refuses it while draining), counts it in flight,
turns any exception into a `ServingError` (unexpected ones become INTERNAL with a fixed text:
their own text goes to the log only), and records the outcome once in the metrics and on the
request's span. Each transport then maps the error's code to its status in one place
(`errors.grpc_status`, `errors.http_status`), as MLServer's handlers do.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from serving import tracing
from serving.errors import Code, InternalError, ServingError, UnavailableError
from serving.metrics import ServingMetrics

logger = logging.getLogger(__name__)

T = TypeVar("T")
# Characters of an error message that go to the log (TF Serving's texts can quote a body).
LOGGED_CHARS = 500
INTERNAL_MESSAGE = "Internal error (logged by the server)"


class Drain:
    """Counts calls in progress and, once closed, refuses new ones with UNAVAILABLE.

    Shutdown closes it first and waits for the count to reach zero before stopping the
    transport, so in-flight calls finish on their open connections; grpc's own `stop(grace)`
    waits for connections too (an idle channel held it for the whole grace) and then cancels
    every call still running.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._inflight = 0
        self._closed = False

    @property
    def inflight(self) -> int:
        """Calls admitted and not yet finished."""
        return self._inflight

    @property
    def closed(self) -> bool:
        """True once `close_and_wait` has been called."""
        return self._closed

    def enter(self) -> None:
        """Admits a call (UnavailableError once closed)."""
        with self._cond:
            if self._closed:
                raise UnavailableError("The server is shutting down")
            self._inflight += 1

    def exit(self) -> None:
        """Marks an admitted call finished."""
        with self._cond:
            self._inflight -= 1
            if self._closed:
                self._cond.notify_all()

    def close_and_wait(self, timeout_s: float) -> int:
        """Refuses new calls, waits up to `timeout_s` for admitted ones; returns those left."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            self._closed = True
            while self._inflight > 0 and time.monotonic() < deadline:
                self._cond.wait(deadline - time.monotonic())
            return self._inflight


@dataclasses.dataclass
class Call:
    """One request as the wrapper records it; the handler fills in `model` and `version`.

    Attributes:
      protocol: `grpc` or `rest`.
      method: TF Serving's method name (Predict, Classify, GetModelStatus, ...).
      model: The requested model name (a metric label only if configured: `ServingMetrics`).
      version: The version that answered ("" when none did).
      code: The outcome.
    """

    protocol: str
    method: str
    model: str = ""
    version: str = ""
    code: Code = Code.OK


class RequestScope:
    """Runs request handlers inside the shared per-request bookkeeping."""

    def __init__(self, metrics: ServingMetrics, drain: Drain, traced: bool = False) -> None:
        """Creates the wrapper of one transport.

        Args:
          metrics: Where outcomes go.
          drain: Admission of this transport's calls.
          traced: Spans are recorded (a tracer provider exists): annotate them.
        """
        self.metrics = metrics
        self.drain = drain
        self._traced = traced
        self._inflight = {p: metrics.inflight.labels(p) for p in ("grpc", "rest")}

    def run(
        self,
        call: Call,
        handler: Callable[[Call], T],
        defer_exit: Callable[[Callable[[], None]], bool] | None = None,
    ) -> T:
        """Admits, runs and records one request.

        Args:
          call: The request's record (protocol, method, model known so far).
          handler: Does the work; may set `call.model` and `call.version`.
          defer_exit: Registers the drain's exit to run later (gRPC: once the answer is sent,
            `ServicerContext.add_callback`); returns False when it cannot (then it runs now).

        Returns:
          The handler's result.

        Raises:
          ServingError: The handler's, UNAVAILABLE while draining, or INTERNAL (with a fixed
            message) for any other exception, which is logged with its traceback.
        """
        start = time.perf_counter()
        deferred = False
        gauge = self._inflight[call.protocol]
        try:
            self.drain.enter()
            try:
                deferred = defer_exit is not None and defer_exit(self.drain.exit)
                gauge.inc()
                try:
                    return handler(call)
                finally:
                    gauge.dec()
            finally:
                if not deferred:
                    self.drain.exit()
        except ServingError as e:
            call.code = e.code
            logger.info(
                "%s %s for model %r failed: %s %s",
                call.protocol,
                call.method,
                call.model,
                e.code.name,
                e.message[:LOGGED_CHARS],
            )
            raise
        except Exception:  # the request boundary: the exception's text goes to the log only
            call.code = Code.INTERNAL
            logger.exception("%s %s for model %r failed unexpectedly", *_who(call))
            raise InternalError(INTERNAL_MESSAGE) from None
        finally:
            self.metrics.observe(
                call.model,
                call.version,
                call.method,
                call.protocol,
                call.code.name,
                time.perf_counter() - start,
            )
            if self._traced:  # the span of the interceptor or of the REST request
                tracing.annotate(call.model, call.version, call.method, call.code.name)


def _who(call: Call) -> tuple[str, str, str]:
    return call.protocol, call.method, call.model
