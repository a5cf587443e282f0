"""gRPC front end: TF Serving's PredictionService and ModelService."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import TypeVar

import grpc
from google.protobuf.message import Message
from tensorflow_serving.apis import (
    model_service_pb2_grpc,
    prediction_service_pb2_grpc,
)

from serving.errors import ServingError, UnimplementedError, grpc_status
from serving.request_scope import Call, Drain, RequestScope
from serving.service import InferenceService

__all__ = ["Drain", "ModelServicer", "PredictionServicer", "add_services"]

logger = logging.getLogger(__name__)

Resp = TypeVar("Resp", bound=Message)


class _Handler:
    def __init__(self, service: InferenceService, scope: RequestScope) -> None:
        self._service = service
        self._scope = scope

    def _call(
        self,
        method: str,
        request: Message,
        context: grpc.ServicerContext,
        fn: Callable[[], Resp],
    ) -> Resp:
        spec = getattr(request, "model_spec", None)
        call = Call("grpc", method, spec.name if spec is not None else "")
        try:
            # The drain counts the call until gRPC has sent the answer (the callback runs when
            # the call ends), so that shutdown does not close connections under responses.
            return self._scope.run(call, functools.partial(_handle, fn), context.add_callback)
        except ServingError as e:
            context.abort(grpc_status(e.code), e.message)
            raise  # unreachable: abort raises


def _handle(fn: Callable[[], Resp], call: Call) -> Resp:
    """Runs a handler and records the version that answered (a module function, not a
    closure made per request)."""
    response = fn()
    answered = getattr(response, "model_spec", None)
    if answered is not None and answered.HasField("version"):
        call.version = str(answered.version.value)
    return response


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


def add_services(server: grpc.Server, service: InferenceService, scope: RequestScope) -> None:
    """Registers PredictionService and ModelService on a gRPC server."""
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        PredictionServicer(service, scope), server
    )
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelServicer(service, scope), server)
