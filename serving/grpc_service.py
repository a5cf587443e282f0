"""gRPC front end: TF Serving's PredictionService and ModelService."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TypeVar

import grpc
from google.protobuf.message import Message
from tensorflow_serving.apis import (
    model_service_pb2_grpc,
    prediction_service_pb2_grpc,
)

from serving import tracing
from serving.errors import Code, ServingError, UnavailableError, UnimplementedError, grpc_status
from serving.metrics import ServingMetrics
from serving.service import InferenceService

logger = logging.getLogger(__name__)

Resp = TypeVar("Resp", bound=Message)


class Drain:
    """Counts gRPC calls in progress and, once closed, refuses new ones with UNAVAILABLE.

    Shutdown closes it first and waits for the count to reach zero before stopping the gRPC
    server, so in-flight calls finish on their open channels; grpc's own `stop(grace)` waits
    for connections too (an idle channel held it for the whole grace) and then cancels every
    call still running.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._inflight = 0
        self._closed = False

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
            self._cond.notify_all()

    def close_and_wait(self, timeout_s: float) -> int:
        """Refuses new calls, waits up to `timeout_s` for admitted ones; returns those left."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            self._closed = True
            while self._inflight > 0 and time.monotonic() < deadline:
                self._cond.wait(deadline - time.monotonic())
            return self._inflight


class _Handler:
    def __init__(self, service: InferenceService, metrics: ServingMetrics, drain: Drain) -> None:
        self._service = service
        self._metrics = metrics
        self._drain = drain

    def _call(
        self,
        method: str,
        request: Message,
        context: grpc.ServicerContext,
        fn: Callable[[], Resp],
    ) -> Resp:
        start = time.perf_counter()
        model = getattr(getattr(request, "model_spec", None), "name", "")
        version, code = "", Code.OK
        try:
            self._drain.enter()
            # Counted until gRPC has sent the answer (the callback runs when the call ends),
            # so that shutdown does not close connections under responses still being sent.
            if not context.add_callback(self._drain.exit):
                self._drain.exit()  # the call has already ended
            with self._metrics.inflight.labels("grpc").track_inprogress():
                response = fn()
            spec = getattr(response, "model_spec", None)
            if spec is not None and spec.HasField("version"):
                version = str(spec.version.value)
            return response
        except ServingError as e:
            code = e.code
            logger.info("gRPC %s for model %r failed: %s %s", method, model, code.name, e.message)
            context.abort(grpc_status(code), e.message)
            raise  # unreachable: abort raises
        except Exception:
            # The Python exception goes to the log only: its text can name paths and code.
            code = Code.INTERNAL
            logger.exception("gRPC %s for model %r failed unexpectedly", method, model)
            context.abort(grpc.StatusCode.INTERNAL, "Internal error (logged by the server)")
            raise
        finally:
            self._metrics.observe(
                model, version, method, "grpc", code.name, time.perf_counter() - start
            )
            tracing.annotate(model, version, method, code.name)  # span of the interceptor


class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer, _Handler):
    """tensorflow.serving.PredictionService."""

    def Predict(self, request, context):  # type: ignore[no-untyped-def]  # noqa: N802
        return self._call("Predict", request, context, lambda: self._service.predict(request))

    def Classify(self, request, context):  # type: ignore[no-untyped-def]  # noqa: N802
        return self._call("Classify", request, context, lambda: self._service.classify(request))

    def Regress(self, request, context):  # type: ignore[no-untyped-def]  # noqa: N802
        return self._call("Regress", request, context, lambda: self._service.regress(request))

    def GetModelMetadata(self, request, context):  # type: ignore[no-untyped-def]  # noqa: N802
        return self._call(
            "GetModelMetadata", request, context, lambda: self._service.metadata(request)
        )

    def MultiInference(self, request, context):  # type: ignore[no-untyped-def]  # noqa: N802
        def fail() -> Message:
            raise UnimplementedError("MultiInference is not implemented by this server")

        return self._call("MultiInference", request, context, fail)


class ModelServicer(model_service_pb2_grpc.ModelServiceServicer, _Handler):
    """tensorflow.serving.ModelService."""

    def GetModelStatus(self, request, context):  # type: ignore[no-untyped-def]  # noqa: N802
        return self._call("GetModelStatus", request, context, lambda: self._service.status(request))

    def HandleReloadConfigRequest(self, request, context):  # type: ignore[no-untyped-def]  # noqa: N802
        def fail() -> Message:
            raise UnimplementedError(
                "HandleReloadConfigRequest is not implemented: edit the model config file "
                "(re-read every --model_config_file_poll_wait_seconds)"
            )

        return self._call("HandleReloadConfigRequest", request, context, fail)


def add_services(
    server: grpc.Server, service: InferenceService, metrics: ServingMetrics, drain: Drain
) -> None:
    """Registers PredictionService and ModelService on a gRPC server."""
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        PredictionServicer(service, metrics, drain), server
    )
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(
        ModelServicer(service, metrics, drain), server
    )
