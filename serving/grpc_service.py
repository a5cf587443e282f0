"""gRPC front end: TF Serving's PredictionService and ModelService."""

from __future__ import annotations

import logging
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
from serving.errors import Code, ServingError, UnimplementedError, grpc_status
from serving.metrics import ServingMetrics
from serving.service import InferenceService

logger = logging.getLogger(__name__)

Resp = TypeVar("Resp", bound=Message)


class _Handler:
    def __init__(self, service: InferenceService, metrics: ServingMetrics) -> None:
        self._service = service
        self._metrics = metrics

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
        except Exception as e:
            code = Code.INTERNAL
            logger.exception("gRPC %s for model %r failed unexpectedly", method, model)
            context.abort(grpc.StatusCode.INTERNAL, f"InternalError error: {type(e).__name__}: {e}")
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


def add_services(server: grpc.Server, service: InferenceService, metrics: ServingMetrics) -> None:
    """Registers PredictionService and ModelService on a gRPC server."""
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        PredictionServicer(service, metrics), server
    )
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(
        ModelServicer(service, metrics), server
    )
