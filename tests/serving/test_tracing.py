"""OpenTelemetry spans per request: one trace from the project's clients to the server, over
gRPC metadata and HTTP headers (W3C traceparent), with model, version, method and status."""

import concurrent.futures
import pathlib

import grpc
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from serving import cli, tracing
from serving.client import ClientSettings, ModelRef, PredictionClient, RestClient
from serving.errors import ServingError
from serving.server import ModelServer
from serving.settings import ModelSettings
from tests.serving.conftest import MODEL, install_version, server_settings
from typed_config import ConfigError, build

pytestmark = pytest.mark.slow


def _provider() -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


@pytest.fixture()
def traced_server(tmp_path: pathlib.Path, model_library: dict[int, str]):
    base = str(tmp_path / MODEL)
    install_version(model_library, 1, base, 1)
    provider, exporter = _provider()
    server = ModelServer(
        server_settings(models=(ModelSettings(MODEL, base),)), tracer_provider=provider
    )
    server.start()
    server.manager.wait_until_available(MODEL, 1, 60)
    yield server, exporter
    server.stop()


def _one_trace(client_spans, server_spans) -> None:
    (caller,) = [s for s in client_spans if s.name == "caller"]
    trace_ids = {s.context.trace_id for s in [*client_spans, *server_spans]}
    assert trace_ids == {caller.context.trace_id}
    (client_span,) = [s for s in client_spans if s.kind == SpanKind.CLIENT]
    (server_span,) = server_spans
    assert client_span.parent.span_id == caller.context.span_id
    # The server's span is a child of the client's: the context crossed the wire.
    assert server_span.parent.span_id == client_span.context.span_id
    assert server_span.parent.is_remote and server_span.kind == SpanKind.SERVER


def test_grpc_predict_joins_the_callers_trace(traced_server, examples) -> None:
    server, server_exporter = traced_server
    client_provider, client_exporter = _provider()
    client = PredictionClient(
        ClientSettings(f"127.0.0.1:{server.grpc_port}", deadline_s=30, max_retries=0),
        tracer_provider=client_provider,
    )
    with client_provider.get_tracer("test").start_as_current_span("caller"):
        client.predict(ModelRef(MODEL), examples[:2])
    client.close()
    (span,) = server_exporter.get_finished_spans()
    _one_trace(client_exporter.get_finished_spans(), [span])
    assert span.name == "/tensorflow.serving.PredictionService/Predict"
    assert span.attributes["serving.model"] == MODEL
    assert span.attributes["serving.version"] == "1"
    assert span.attributes["serving.method"] == "Predict"
    assert span.attributes["serving.status_code"] == "OK"


def test_grpc_error_is_recorded_on_the_span(traced_server, examples) -> None:
    server, server_exporter = traced_server
    with (
        PredictionClient(
            ClientSettings(f"127.0.0.1:{server.grpc_port}", deadline_s=30, max_retries=0)
        ) as client,
        pytest.raises(ServingError),
    ):
        client.predict(ModelRef("no_such_model"), examples[:1])
    (span,) = server_exporter.get_finished_spans()
    assert span.attributes["serving.status_code"] == "NOT_FOUND"
    assert span.attributes["rpc.grpc.status_code"] == 5  # NOT_FOUND


def test_rest_predict_joins_the_callers_trace(traced_server, examples) -> None:
    server, server_exporter = traced_server
    client_provider, client_exporter = _provider()
    client = RestClient(f"http://127.0.0.1:{server.rest_port}", tracer_provider=client_provider)
    with client_provider.get_tracer("test").start_as_current_span("caller"):
        client.predict(ModelRef(MODEL), examples[:2])
        with pytest.raises(ServingError):
            client.predict(ModelRef(MODEL, version=7), examples[:1])
    assert client.request("GET", "/healthz")[0] == 200  # probes make no spans
    client.close()
    ok, missing = server_exporter.get_finished_spans()
    client_spans = client_exporter.get_finished_spans()
    first_client = [s for s in client_spans if s.kind == SpanKind.CLIENT][:1]
    callers = [s for s in client_spans if s.name == "caller"]
    _one_trace([*callers, *first_client], [ok])
    assert missing.context.trace_id == ok.context.trace_id
    assert ok.name == "REST Predict"
    assert ok.attributes["serving.model"] == MODEL
    assert ok.attributes["serving.version"] == "1"
    assert ok.attributes["http.response.status_code"] == 200
    assert missing.attributes["serving.status_code"] == "NOT_FOUND"
    assert missing.attributes["http.response.status_code"] == 404


def test_exporter_none_installs_no_provider_and_no_interceptor() -> None:
    settings = tracing.TracingSettings()
    assert settings.exporter == "none"
    assert tracing.build_tracer_provider(settings, "x") is None
    assert tracing.ServerTracing(None).grpc_interceptors() == []


def test_console_exporter_gets_one_batch_processor() -> None:
    provider = tracing.build_tracer_provider(tracing.TracingSettings(exporter="console"), "svc")
    assert provider is not None
    processors = provider._active_span_processor._span_processors
    assert [type(p).__name__ for p in processors] == ["BatchSpanProcessor"]
    assert provider.resource.attributes["service.name"] == "svc"
    provider.shutdown()


def test_otlp_needs_an_endpoint_and_flags_reach_the_settings(tmp_path) -> None:
    with pytest.raises(ConfigError, match="otlp_endpoint"):
        build(tracing.TracingSettings, {"exporter": "otlp"})
    args = cli._parser().parse_args(
        [
            f"--model_base_path={tmp_path}",
            "--trace_exporter=otlp",
            "--otlp_endpoint=collector:4317",
        ]
    )
    settings = cli.settings_from_args(args).tracing
    assert (settings.exporter, settings.otlp_endpoint) == ("otlp", "collector:4317")


def test_otlp_exporter_delivers_spans_to_a_collector() -> None:
    # A real OTLP/gRPC receiver (the collector's TraceService, from opentelemetry-proto).
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

    received = []

    class Collector(trace_service_pb2_grpc.TraceServiceServicer):
        def Export(self, request, context):  # noqa: N802
            received.append(request)
            return trace_service_pb2.ExportTraceServiceResponse()

    collector = grpc.server(concurrent.futures.ThreadPoolExecutor(2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Collector(), collector)
    port = collector.add_insecure_port("127.0.0.1:0")
    collector.start()
    try:
        settings = tracing.TracingSettings(exporter="otlp", otlp_endpoint=f"127.0.0.1:{port}")
        provider = tracing.build_tracer_provider(settings, "svc")
        assert provider is not None
        with provider.get_tracer("test").start_as_current_span("hello"):
            pass
        provider.shutdown()  # flushes
    finally:
        collector.stop(None)
    (request,) = received
    (resource_spans,) = request.resource_spans
    assert [s.name for s in resource_spans.scope_spans[0].spans] == ["hello"]
    service = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
    assert service["service.name"] == "svc"


def test_new_traces_are_sampled_before_opentelemetry_and_callers_are_followed() -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    never = tracing.ServerTracing(provider, sampling_ratio=0.0)
    for _ in range(20):
        with never.rest_span("POST", "/v1/models/m:predict", {}) as span:
            assert span is None  # no span object at all: OpenTelemetry is not entered
    parent = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
    with never.rest_span("POST", "/v1/models/m:predict", parent) as span:
        assert span is not None and span.is_recording()  # a sampled caller is followed
    (recorded,) = exporter.get_finished_spans()
    assert recorded.context.trace_id == 0x0AF7651916CD43DD8448EB211C80319C
    always = tracing.ServerTracing(provider, sampling_ratio=1.0)
    with always.rest_span("GET", "/v1/models/m", {}) as span:
        assert span is not None
