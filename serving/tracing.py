"""OpenTelemetry tracing: settings, tracer providers, W3C trace context for gRPC and REST.

Shared by the server, the project's clients and the local pipeline runner (`pipeline/` imports
`serving/`, never the reverse). OpenTelemetry is imported only when tracing is switched on or a
function here is called, so importing this module (for `TracingSettings`) stays cheap.
"""

from __future__ import annotations

import contextlib
import random
import typing
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from typing import TYPE_CHECKING, Annotated, Any

import pydantic
import pydantic.dataclasses
from pydantic import Field

from typed_config import CONFIG, Settings, check_field

if TYPE_CHECKING:
    import grpc
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Span, Tracer

Exporter = typing.Literal["none", "console", "otlp"]
EXPORTERS: tuple[Exporter, ...] = typing.get_args(Exporter)
# The W3C trace-context header, also the gRPC metadata key (gRPC keys are lower case).
TRACEPARENT = "traceparent"


@pydantic.dataclasses.dataclass(frozen=True, config=CONFIG)
class TracingSettings(Settings):
    """Where spans go.

    Attributes:
      exporter: `none` (no tracer provider, no processor: tracing costs nothing), `console`
        (spans printed as JSON on stdout) or `otlp` (OTLP over gRPC to `otlp_endpoint`).
      otlp_endpoint: Collector address for `otlp`, e.g. `localhost:4317`.
      otlp_insecure: Plaintext gRPC to the collector (a sidecar or node-local agent).
      service_name: The `service.name` resource attribute; None = the caller's default.
      sampling_ratio: Share of traces started here that are recorded (OpenTelemetry's
        `ParentBased(TraceIdRatioBased(ratio))`: a caller's sampled `traceparent` is always
        followed); None = the caller's default (the server's is `settings.TRACE_SAMPLING_RATIO`,
        others record every trace, OpenTelemetry's default sampler).
    """

    exporter: Exporter = "none"
    otlp_endpoint: str | None = None
    otlp_insecure: bool = True
    service_name: Annotated[str, Field(min_length=1)] | None = None
    sampling_ratio: Annotated[float, Field(ge=0.0, le=1.0)] | None = None

    @pydantic.model_validator(mode="after")
    def _check_endpoint(self) -> TracingSettings:
        check_field(
            self.exporter != "otlp" or bool(self.otlp_endpoint),
            "otlp_endpoint",
            "a collector address (host:port) when exporter is otlp",
            self.otlp_endpoint,
        )
        return self


def build_tracer_provider(
    settings: TracingSettings, default_service_name: str
) -> TracerProvider | None:
    """A tracer provider exporting as configured, or None for `none`.

    The provider is returned, not installed globally: the server, the clients and the runner
    take it explicitly, so two servers in one process (tests) keep their spans apart.

    Args:
      settings: Tracing settings.
      default_service_name: `service.name` when the settings name none.

    Returns:
      An SDK provider with one batch processor, or None when the exporter is `none`.
    """
    if settings.exporter == "none":
        return None
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter

    exporter: SpanExporter
    if settings.exporter == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        exporter = ConsoleSpanExporter()
    else:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter(
            endpoint=settings.otlp_endpoint, insecure=settings.otlp_insecure
        )
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    provider = TracerProvider(
        resource=Resource.create({"service.name": settings.service_name or default_service_name}),
        sampler=ParentBased(
            TraceIdRatioBased(1.0 if settings.sampling_ratio is None else settings.sampling_ratio)
        ),
    )
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def _propagator() -> Any:
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    return TraceContextTextMapPropagator()


def inject(headers: MutableMapping[str, str]) -> None:
    """Writes the current span's W3C `traceparent` (if any) into HTTP headers or metadata."""
    _propagator().inject(headers)


def annotate(model: str, version: str, method: str, code: str) -> None:
    """Sets the request's model, version, method and status code on the current span.

    Called by both front ends where they record their metrics; a no-op without tracing.
    """
    from opentelemetry import trace

    span = trace.get_current_span()
    if not span.is_recording():
        return
    span.set_attributes(
        {
            "serving.model": model,
            "serving.version": version,
            "serving.method": method,
            "serving.status_code": code,
        }
    )


class ServerTracing:
    """The server's spans: a gRPC interceptor and REST request spans, children of the caller.

    New traces (requests without a `traceparent`) are sampled here, before OpenTelemetry is
    entered: a request left out costs a header lookup and one random draw, where even a span
    the SDK's sampler drops costs the interceptor, context attach/detach and the sampler
    (~35-70 us per request here, `bench/serving_bench.py --layers`). A request with a
    `traceparent` always reaches OpenTelemetry, whose ParentBased sampler follows the caller.
    """

    def __init__(self, provider: TracerProvider | None, sampling_ratio: float = 1.0) -> None:
        """Args: provider: where spans go (None = no spans, no interceptor); sampling_ratio:
        share of new traces recorded (the provider should record every one it is given)."""
        self.provider = provider
        self.sampling_ratio = sampling_ratio
        self._tracer: Tracer | None = (
            provider.get_tracer("serving") if provider is not None else None
        )

    def _new_trace_sampled(self) -> bool:
        return self.sampling_ratio >= 1.0 or random.random() < self.sampling_ratio

    def grpc_interceptors(self) -> list[grpc.ServerInterceptor]:
        """OpenTelemetry's gRPC server interceptor (extracts `traceparent` metadata), or none."""
        if self.provider is None:
            return []
        from opentelemetry.instrumentation.grpc import server_interceptor

        traced = server_interceptor(tracer_provider=self.provider)
        if self.sampling_ratio >= 1.0:
            return [traced]
        return [_sampling_interceptor(traced, self._new_trace_sampled)]

    @contextlib.contextmanager
    def rest_span(self, verb: str, path: str, headers: Mapping[str, str]) -> Iterator[Span | None]:
        """A SERVER span for one REST request, child of the `traceparent` header's span.

        Args:
          verb: HTTP method.
          path: URL path (an attribute; the span name stays low-cardinality).
          headers: Request headers.

        Yields:
          The span (current in this thread while the request runs), or None without tracing
          or when a new trace is not sampled.
        """
        if self._tracer is None or (not headers.get(TRACEPARENT) and not self._new_trace_sampled()):
            yield None
            return
        from opentelemetry.trace import SpanKind

        with self._tracer.start_as_current_span(
            f"REST {verb}",
            context=_propagator().extract(headers),
            kind=SpanKind.SERVER,
            attributes={"http.request.method": verb, "url.path": path},
        ) as span:
            yield span


def _sampling_interceptor(
    traced: grpc.ServerInterceptor, sampled: Callable[[], bool]
) -> grpc.ServerInterceptor:
    """Passes a call to `traced` when it carries a `traceparent` or `sampled()` says so."""
    import grpc

    class Sampling(grpc.ServerInterceptor):  # type: ignore[misc]
        def intercept_service(self, continuation: Any, details: Any) -> Any:
            metadata = details.invocation_metadata or ()
            if any(key == TRACEPARENT for key, _ in metadata) or sampled():
                return traced.intercept_service(continuation, details)
            return continuation(details)

    return Sampling()


def finish_rest_span(span: Span | None, http_status: int) -> None:
    """Records the HTTP status on a REST span (5xx marks it as an error)."""
    if span is None:
        return
    from opentelemetry.trace import Status, StatusCode

    span.set_attribute("http.response.status_code", http_status)
    method = span.attributes.get("serving.method") if hasattr(span, "attributes") else None
    if method:
        span.update_name(f"REST {method}")
    if http_status >= 500:
        span.set_status(Status(StatusCode.ERROR))


def traced_channel(channel: grpc.Channel, provider: TracerProvider | None) -> grpc.Channel:
    """The channel behind OpenTelemetry's gRPC client interceptor: each call gets a CLIENT span
    whose `traceparent` goes out in the call's metadata (`provider` None = the global provider;
    without one the caller's span context is still propagated)."""
    from opentelemetry.instrumentation.grpc import client_interceptor
    from opentelemetry.instrumentation.grpc.grpcext import intercept_channel

    return typing.cast(
        "grpc.Channel", intercept_channel(channel, client_interceptor(tracer_provider=provider))
    )


@contextlib.contextmanager
def rest_client_span(
    provider: TracerProvider | None, verb: str, path: str, headers: MutableMapping[str, str]
) -> Iterator[Span]:
    """A CLIENT span around one REST call whose `traceparent` is written into `headers`.

    Args:
      provider: Where spans go; None = the global provider (a no-op one by default, which
        still propagates the caller's span context).
      verb: HTTP method.
      path: URL path.
      headers: The request's headers, updated in place.

    Yields:
      The span.
    """
    from opentelemetry import trace
    from opentelemetry.trace import SpanKind

    tracer = trace.get_tracer("serving.client", tracer_provider=provider)
    with tracer.start_as_current_span(
        f"REST {verb}",
        kind=SpanKind.CLIENT,
        attributes={"http.request.method": verb, "url.path": path},
    ) as span:
        inject(headers)
        yield span
