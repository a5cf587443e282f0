"""The front's gRPC side: every method forwarded to the backend as bytes, unparsed.

A generic handler with identity (de)serializers (`grpc.unary_unary_rpc_method_handler`
without `request_deserializer`/`response_serializer`) receives and returns the raw message
bytes, and the backend stub (`channel.unary_unary(method)` without serializers) sends them on.
No call is parsed on the request path; for a sampled Predict/Classify/Regress the bytes of the
request and the answer are queued, and the log's writer thread parses them. Status codes,
details, trailing metadata and the deadline travel both ways; the front retries nothing
(clients' retry policy sees the backend's UNAVAILABLE as it is).
"""

from __future__ import annotations

import concurrent.futures
import logging
from collections.abc import Callable, Iterator
from typing import Any

import grpc

from serving.front import records
from serving.front.log import RecordLog

logger = logging.getLogger(__name__)

# No message size limit of the front's own: TF Serving's limits apply (it answers them).
UNLIMITED = [("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)]
# A deadline further away than this is "no deadline" (grpc reports a huge remaining time).
_NO_DEADLINE_S = 10**6
# Streaming methods of the services TF Serving's port answers (grpc.health.v1 `Watch`).
_UNARY_STREAM = frozenset({"/grpc.health.v1.Health/Watch"})
# Call metadata that belongs to one hop (HTTP/2 pseudo-headers, grpc's own, the user agent).
_HOP_KEYS = ("grpc-", ":")


def _forwarded(metadata: Any) -> list[tuple[str, str | bytes]]:
    return [
        (m.key, m.value)
        for m in metadata or ()
        if not m.key.startswith(_HOP_KEYS) and m.key != "user-agent"
    ]


def _timeout(context: grpc.ServicerContext) -> float | None:
    remaining = context.time_remaining()
    return None if remaining is None or remaining > _NO_DEADLINE_S else remaining


def _abort(context: grpc.ServicerContext, error: grpc.RpcError) -> None:
    """Answers the client with the backend's status, details and trailing metadata."""
    call: Any = error
    trailing = call.trailing_metadata() if hasattr(call, "trailing_metadata") else None
    if trailing:
        context.set_trailing_metadata(_forwarded(trailing))
    context.abort(call.code(), call.details() or "")


class ForwardingHandler(grpc.GenericRpcHandler):
    """Serves every method name by forwarding it to the backend channel."""

    def __init__(self, channel: grpc.Channel, log: RecordLog | None) -> None:
        """Forwards over `channel`; samples Predict/Classify/Regress into `log` (None: off)."""
        self._channel = channel
        self._log = log
        self._handlers: dict[str, grpc.RpcMethodHandler] = {}

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
        method: str = handler_call_details.method  # type: ignore[attr-defined]
        handler = self._handlers.get(method)
        if handler is None:
            if method in _UNARY_STREAM:
                handler = grpc.unary_stream_rpc_method_handler(self._stream(method))
            else:
                handler = grpc.unary_unary_rpc_method_handler(self._unary(method))
            self._handlers[method] = handler
        return handler

    def _unary(self, method: str) -> Callable[[bytes, grpc.ServicerContext], bytes]:
        stub = self._channel.unary_unary(method)
        log = self._log if method in records.LOGGED_METHODS else None

        def forward(request: bytes, context: grpc.ServicerContext) -> bytes:
            try:
                response, call = stub.with_call(
                    request,
                    timeout=_timeout(context),
                    metadata=_forwarded(context.invocation_metadata()),
                )
            except grpc.RpcError as e:
                _abort(context, e)
                raise  # not reached: abort raises
            trailing = call.trailing_metadata()
            if trailing:
                context.set_trailing_metadata(_forwarded(trailing))
            if log is not None and log.sample():
                rate = log.settings.sampling_rate
                log.offer(lambda: records.from_grpc(method, request, response, rate))
            return response  # type: ignore[no-any-return]

        return forward

    def _stream(self, method: str) -> Callable[[bytes, grpc.ServicerContext], Iterator[bytes]]:
        stub = self._channel.unary_stream(method)

        def forward(request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
            call = stub(
                request,
                timeout=_timeout(context),
                metadata=_forwarded(context.invocation_metadata()),
            )
            context.add_callback(call.cancel)
            try:
                yield from call
            except grpc.RpcError as e:
                if e.code() != grpc.StatusCode.CANCELLED:  # type: ignore[attr-defined]
                    _abort(context, e)

        return forward


def start_grpc(
    address: str,
    backend: str,
    log: RecordLog | None,
    max_workers: int,
    credentials: grpc.ServerCredentials | None = None,
) -> tuple[grpc.Server, grpc.Channel, int]:
    """Starts the gRPC front on `address`; returns the server, its backend channel and port."""
    channel = grpc.insecure_channel(backend, options=UNLIMITED)
    server = grpc.server(
        concurrent.futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="front"),
        handlers=[ForwardingHandler(channel, log)],
        options=UNLIMITED,
    )
    port = (
        server.add_secure_port(address, credentials)
        if credentials is not None
        else server.add_insecure_port(address)
    )
    server.start()
    return server, channel, port
