"""Predict latency and throughput: gRPC and REST against the server, vs the in-process floor.

Run: `make serving-bench` (or, from the repository root, `.venv/bin/python -m
bench.serving_bench --duration 3`). The server runs in its own process (as in production);
load comes from client threads in this one.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any

import grpc
import numpy as np
import psutil
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2

import schemas
from serving import schema, tensors
from serving.client import ClientSettings, ModelRef, PredictionClient, RestClient
from serving.errors import ServingError
from serving.examples import ExampleBuilder
from serving.model import ServableVersion
from serving.server import ModelServer
from serving.settings import InputValidation, ModelSettings, ServerSettings
from tests.serving.support import fixture

MODEL = "chicago_taxi"
PREDICT_METHOD = "/tensorflow.serving.PredictionService/Predict"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Client threads per gRPC channel: half the server's default grpc_max_streams_per_connection.
# At the cap itself a new stream can reach the server before the previous one's slot is
# freed there, and is refused (UNAVAILABLE): 23 errors at 20 threads on channels of 16.
_CAP: int = next(
    f.default
    for f in dataclasses.fields(ServerSettings)
    if f.name == "grpc_max_streams_per_connection"
)  # type: ignore[assignment]
STREAMS_PER_CHANNEL = max(1, _CAP // 2)
PATH_ORDER = {
    "in-process": 0,
    "service": 1,
    "empty-grpc": 2,
    "grpc": 3,
    "grpc-baseline": 4,
    "rest": 9,
}
EMPTY_GRPC = "empty-grpc"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _examples(n: int) -> list[bytes]:
    builder = ExampleBuilder(schema.load_features(schemas.schema_path("taxi")))
    rows = fixture.sample_rows()
    return [builder.build(rows[i % len(rows)]).SerializeToString() for i in range(n)]


def _measure(call: Callable[[int], None], concurrency: int, duration_s: float) -> dict[str, Any]:
    """Runs `call` from `concurrency` threads for `duration_s`; returns latencies and elapsed."""
    latencies: list[list[float]] = [[] for _ in range(concurrency)]
    errors = [0]
    start_gate = threading.Barrier(concurrency + 1)
    stop_at = [0.0]

    def worker(i: int) -> None:
        start_gate.wait()
        out = latencies[i]
        while True:
            t0 = time.perf_counter()
            if t0 >= stop_at[0]:
                return
            try:
                call(i)
            except (ServingError, grpc.RpcError):
                errors[0] += 1
                continue
            out.append(time.perf_counter() - t0)

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(concurrency)]
    for t in threads:
        t.start()
    begin = time.perf_counter()
    stop_at[0] = begin + duration_s
    start_gate.wait()
    for t in threads:
        t.join()
    return {
        "latencies": [x for lst in latencies for x in lst],
        "errors": errors[0],
        "elapsed": time.perf_counter() - begin,
    }


def _cpu_seconds(pid: int | None) -> float | None:
    """CPU time (user + system) of this process (None) or of `pid` (None once it is gone)."""
    if pid is None:
        return time.process_time()
    try:
        times = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return None
    return float(times.user + times.system)


def _summary(parts: list[dict[str, Any]]) -> dict[str, Any]:
    flat = np.array([x for p in parts for x in p["latencies"]]) * 1e3
    elapsed = sum(p["elapsed"] for p in parts)

    def per_request(key: str) -> float | None:
        values = [p.get(key) for p in parts]
        if flat.size == 0 or any(v is None for v in values):
            return None
        return float(sum(values)) / flat.size * 1e3  # type: ignore[arg-type]

    return {
        "requests": int(flat.size),
        "errors": sum(p["errors"] for p in parts),
        "p50_ms": float(np.percentile(flat, 50)),
        "p90_ms": float(np.percentile(flat, 90)),
        "p99_ms": float(np.percentile(flat, 99)),
        "rps": flat.size / elapsed,
        "cpu_ms": per_request("cpu_s"),
        "server_cpu_ms": per_request("server_cpu_s"),
    }


def _measure_cpu(
    call: Callable[[int], None], concurrency: int, duration_s: float, server_pid: int | None
) -> dict[str, Any]:
    """`_measure`, plus the CPU seconds this process and the server process (if any) used."""
    cpu0, server0 = _cpu_seconds(None), _cpu_seconds(server_pid) if server_pid else None
    part = _measure(call, concurrency, duration_s)
    cpu1, server1 = _cpu_seconds(None), _cpu_seconds(server_pid) if server_pid else None
    part["cpu_s"] = None if cpu0 is None or cpu1 is None else cpu1 - cpu0
    if server0 is not None and server1 is not None:
        part["server_cpu_s"] = server1 - server0
    return part


def _start_server(
    base: str, validation: str, source: str | None, extra: list[str]
) -> tuple[subprocess.Popen[bytes], int, int]:
    """Starts `python -m serving` (from `source`'s checkout when given) on free ports."""
    grpc_port, rest_port = _free_port(), _free_port()
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    if source:
        env["PYTHONPATH"] = os.pathsep.join([source, ROOT, env.get("PYTHONPATH", "")])
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "serving",
            f"--port={grpc_port}",
            f"--rest_api_port={rest_port}",
            "--host=127.0.0.1",
            f"--model_name={MODEL}",
            f"--model_base_path={base}",
            f"--input_validation={validation}",
            "--log_level=WARNING",
            "--log_format=text",
            *extra,
        ],
        env=env,
        cwd=source or ROOT,
    )
    return server, grpc_port, rest_port


def _start_empty_server(
    answers: dict[int, bytes], workdir: str
) -> tuple[subprocess.Popen[bytes], int, int]:
    """Starts the `empty-grpc` reference server (`_serve_empty`) with these answers."""
    port = _free_port()
    path = os.path.join(workdir, "empty-grpc-answers.json")
    with open(path, "w") as f:
        json.dump({str(size): body.hex() for size, body in answers.items()}, f)
    server = subprocess.Popen(
        [sys.executable, "-m", "bench.serving_bench", "--empty_server", f"{port}:{path}"],
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
        cwd=ROOT,
    )
    return server, port, 0


def _serve_empty(spec: str) -> int:
    """The `empty-grpc` reference: Python gRPC's floor, with no model and no request handling.

    A synchronous `grpc.server` with the model server's thread pool and channel options, and
    one generic handler for Predict taking and answering bytes: each request (by its size) gets
    the PredictResponse bytes our server sends for it, so both directions carry the same bytes
    as the `grpc` path and the client does the same work. The difference between `grpc` and
    this path is what the model server does beyond gRPC itself (model call included).
    """
    from serving.server import grpc_server_options  # the same transport settings

    port, _, path = spec.partition(":")
    with open(path) as f:
        answers = {int(size): bytes.fromhex(body) for size, body in json.load(f).items()}
    settings = ServerSettings(models=(ModelSettings(MODEL, ROOT),))  # only for its defaults

    def predict(request: bytes, context: grpc.ServicerContext) -> bytes:
        return answers[len(request)]

    handler = grpc.method_handlers_generic_handler(
        "tensorflow.serving.PredictionService",
        {"Predict": grpc.unary_unary_rpc_method_handler(predict)},
    )
    server = grpc.server(
        concurrent.futures.ThreadPoolExecutor(max_workers=settings.grpc_max_workers),
        handlers=(handler,),
        options=grpc_server_options(settings),
        maximum_concurrent_rpcs=settings.concurrent_rpc_limit,
    )
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    server.wait_for_termination()
    return 0


def _wait_started(server: subprocess.Popen[bytes], address: str, timeout_s: float = 120) -> None:
    """Waits until `server` accepts connections on `address` (RuntimeError if it exits)."""
    deadline = time.monotonic() + timeout_s
    with grpc.insecure_channel(address) as channel:
        ready = grpc.channel_ready_future(channel)
        while True:
            try:
                ready.result(timeout=1)
                return
            except grpc.FutureTimeoutError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{address}: server not started") from None


def _wait_ready(address: str) -> None:
    with PredictionClient(ClientSettings(address, deadline_s=60)) as client:
        client.wait_until_available(ModelRef(MODEL), timeout_s=180)


def _predict_request(examples: list[bytes]) -> bytes:
    """The serialized PredictRequest of these examples that every gRPC path sends."""
    request = predict_pb2.PredictRequest()
    request.model_spec.name = MODEL
    request.model_spec.signature_name = "serving_default"
    request.inputs["examples"].CopyFrom(tensors.string_tensor(examples))
    return request.SerializeToString()


def run(
    duration_s: float,
    concurrencies: list[int],
    batches: list[int],
    validation: InputValidation,
    rounds: int = 2,
    baseline_source: str | None = None,
    server_args: list[str] | None = None,
    variants: dict[str, list[str]] | None = None,
    call_layers: bool = False,
) -> dict[str, Any]:
    """Builds a model, starts the server(s) in subprocesses, and measures every cell.

    Paths per (examples/request, concurrency) cell, measured in `rounds` interleaved rounds
    (so that background load drifts over all paths alike):
      in-process: the plain SavedModel signature call from threads (the floor).
      service: this checkout's request handling in this process, without transport:
        PredictRequest bytes -> InferenceService.predict (same validation as the server)
        -> response bytes.
      empty-grpc: the same request bytes to a Python gRPC server that answers with the
        response bytes at once (`_serve_empty`): the transport's own floor.
      grpc: Predict to the server subprocess over one channel; requests are serialized once,
        responses are parsed and their outputs converted to arrays (as `.numpy()` does).
      grpc-baseline: the same, to a server run from `baseline_source` (another checkout)
        with `server_args`; `grpc-baseline+<name>` with each variant's flags added too.
      grpc+<name>: the same, to this checkout's server with a variant's flags added (e.g.
        tracing or the request log on), to show what that layer costs per request.
      rest: :predict over a persistent connection per client thread (`RestClient`).
    """
    workdir = tempfile.mkdtemp(prefix="serving-bench-")
    features = schema.load_features(schemas.schema_path("taxi"))
    base = os.path.join(workdir, MODEL)
    fixture.build_model(os.path.join(base, "1"), features, hidden=64)
    extra = list(server_args or [])
    servers = {"grpc": _start_server(base, validation, None, extra)}
    if baseline_source:
        servers["grpc-baseline"] = _start_server(base, validation, baseline_source, extra)
    for name, flags in (variants or {}).items():
        flags = [f.replace("{workdir}", workdir) for f in flags]
        servers[f"grpc+{name}"] = _start_server(base, validation, None, extra + flags)
        if baseline_source:
            servers[f"grpc-baseline+{name}"] = _start_server(
                base, validation, baseline_source, extra + flags
            )
    results: dict[str, Any] = {
        "cells": [],
        "validation": validation,
        "duration_s": duration_s,
        "rounds": rounds,
        "server_args": extra,
        "baseline_source": baseline_source,
    }
    local = ModelServer(
        ServerSettings(
            host="127.0.0.1",
            grpc_port=0,
            rest_port=None,
            models=(ModelSettings(MODEL, base),),
            schema_path=schemas.schema_path("taxi") if validation != "off" else None,
            input_validation=validation,
        )
    )
    channels: list[grpc.Channel] = []
    rest_clients: list[RestClient] = []
    try:
        local.start()
        local.manager.wait_until_available(MODEL, 1, 180)
        examples_of = {batch: _examples(batch) for batch in batches}
        requests = {batch: _predict_request(examples_of[batch]) for batch in batches}
        servers[EMPTY_GRPC] = _start_empty_server(
            {
                len(raw): local.service.predict(
                    predict_pb2.PredictRequest.FromString(raw)
                ).SerializeToString()
                for raw in requests.values()
            },
            workdir,
        )
        stubs: dict[str, list[Callable[..., Any]]] = {}
        for name, (_, grpc_port, _) in servers.items():
            if name == EMPTY_GRPC:
                _wait_started(servers[name][0], f"127.0.0.1:{grpc_port}")
            else:
                _wait_ready(f"127.0.0.1:{grpc_port}")
            # One channel per STREAMS_PER_CHANNEL client threads: the server refuses streams
            # beyond `grpc_max_streams_per_connection` on one connection.
            stubs[name] = []
            for _ in range(-(-max(concurrencies) // STREAMS_PER_CHANNEL)):
                channel = grpc.insecure_channel(
                    f"127.0.0.1:{grpc_port}", options=[("grpc.max_receive_message_length", -1)]
                )
                channels.append(channel)
                stubs[name].append(
                    channel.unary_unary(
                        PREDICT_METHOD,
                        request_serializer=None,  # requests are sent pre-serialized
                        response_deserializer=predict_pb2.PredictResponse.FromString,
                    )
                )
        rest_port = servers["grpc"][2]
        rest_clients = [
            RestClient(f"http://127.0.0.1:{rest_port}", 60) for _ in range(max(concurrencies))
        ]
        signature = tf.saved_model.load(os.path.join(base, "1")).signatures["serving_default"]
        if call_layers:
            with local.manager.lease(MODEL) as servable:
                results["call_layers_us"] = _call_layers(signature, servable)
        model = ModelRef(MODEL)
        for batch in batches:
            examples = examples_of[batch]
            tensor_in = np.array(examples, dtype=object)
            raw = requests[batch]

            def in_process(_: int, x: np.ndarray = tensor_in) -> None:
                signature(examples=tf.constant(x))["probabilities"].numpy()

            def service(_: int, r: bytes = raw) -> None:
                response = local.service.predict(predict_pb2.PredictRequest.FromString(r))
                response.SerializeToString()

            def remote(
                stub_list: list[Callable[..., Any]], r: bytes = raw
            ) -> Callable[[int], None]:
                def over_grpc(i: int) -> None:
                    response = stub_list[i // STREAMS_PER_CHANNEL](r, timeout=60)
                    for value in response.outputs.values():
                        tensors.to_ndarray(value)

                return over_grpc

            def over_rest(i: int, e: list[bytes] = examples) -> None:
                rest_clients[i].predict(model, e)

            calls: dict[str, Callable[[int], None]] = {
                "in-process": in_process,
                "service": service,
                **{name: remote(stub) for name, stub in stubs.items()},
                "rest": over_rest,
            }
            # CPU is counted per path: the bench process's (the whole work in-process, the
            # client's for gRPC and REST) and the server process's for the remote paths.
            pids = {name: server.pid for name, (server, _, _) in servers.items()}
            pids["rest"] = servers["grpc"][0].pid
            for warm in calls.values():
                for _ in range(50):
                    warm(0)
            for concurrency in concurrencies:
                parts: dict[str, list[dict[str, Any]]] = {name: [] for name in calls}
                for _ in range(rounds):
                    for name, call in calls.items():
                        parts[name].append(
                            _measure_cpu(call, concurrency, duration_s / rounds, pids.get(name))
                        )
                for name in calls:
                    cell = _summary(parts[name])
                    cell.update(
                        path=name,
                        batch=batch,
                        concurrency=concurrency,
                        examples_per_s=cell["rps"] * batch,
                    )
                    results["cells"].append(cell)
                    print(
                        f"{name:13s} batch={batch:<3d} conc={concurrency:<2d} "
                        f"p50={cell['p50_ms']:.2f}ms p90={cell['p90_ms']:.2f}ms "
                        f"p99={cell['p99_ms']:.2f}ms rps={cell['rps']:.0f} errors={cell['errors']} "
                        f"cpu/req={_ms(cell['cpu_ms'])}ms "
                        f"server cpu/req={_ms(cell['server_cpu_ms'])}ms",
                        flush=True,
                    )
    finally:
        for channel in channels:
            channel.close()
        for c in rest_clients:
            c.close()
        local.stop()
        for server, _, _ in servers.values():
            server.terminate()  # all at once: each drains and flushes its spans in parallel
        for server, _, _ in servers.values():
            try:
                server.wait(30)
            except subprocess.TimeoutExpired:  # e.g. an OTLP exporter retrying a dead collector
                server.kill()
                server.wait(10)
    results["cells"].sort(key=lambda c: (PATH_ORDER.get(c["path"], 5), c["path"], c["batch"]))
    return results


def _per_call_us(fn: Callable[[], object], n: int = 20000) -> float:
    """Median over 5 rounds of the mean wall time of `fn` (microseconds)."""
    for _ in range(min(n, 1000)):
        fn()
    rounds = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(n // 5):
            fn()
        rounds.append((time.perf_counter() - start) / (n // 5) * 1e6)
    return float(np.median(rounds))


def layers() -> dict[str, float]:
    """What each per-request layer costs on the request thread, in microseconds per request.

    Measured in this process on the real objects the server builds: the request wrapper
    (`RequestScope.run` around an empty handler: drain, in-flight gauge, metrics), metrics
    alone (`ServingMetrics.observe`), the request log's `offer` at its default sampling (the
    writer thread's work is off the request path), and a REST request span with an SDK tracer
    provider recording every trace and at the server's default ratio, with a batch processor
    whose exporter drops the spans (what the OTLP exporter does on the request thread:
    enqueue). The gRPC interceptor's span is measured end to end by `--variant`. Health costs
    nothing per request: its statuses are set when models change, not per call.
    """
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        SpanExporter,
        SpanExportResult,
    )

    from serving.metrics import ServingMetrics
    from serving.request_log import RequestLogger
    from serving.request_scope import Call, Drain, RequestScope
    from serving.settings import RequestLogSettings
    from serving.tracing import ServerTracing

    class Dropping(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    metrics = ServingMetrics()
    metrics.set_models([MODEL])
    plain = RequestScope(metrics, Drain())
    from serving.settings import TRACE_SAMPLING_RATIO

    def tracer(ratio: float) -> tuple[TracerProvider, ServerTracing]:
        # As the server builds it: the provider records what it is given, ServerTracing
        # samples new traces before entering OpenTelemetry.
        provider = TracerProvider()
        provider.add_span_processor(BatchSpanProcessor(Dropping()))
        return provider, ServerTracing(provider, ratio)

    providers = {ratio: tracer(ratio) for ratio in (1.0, TRACE_SAMPLING_RATIO)}
    traced_scope = RequestScope(metrics, Drain(), traced=True)
    log_dir = tempfile.mkdtemp(prefix="serving-bench-log-")
    request_log = RequestLogger(RequestLogSettings(directory=log_dir), metrics.registry)
    request_log.start()
    arrays = {"examples": np.array(_examples(1), dtype=object)}
    outputs = {"probabilities": np.array([[0.5]], dtype=np.float32)}

    def scope_call() -> None:
        plain.run(Call("grpc", "Predict", MODEL), lambda call: None)

    def traced_call(traced: ServerTracing) -> Callable[[], None]:
        def call() -> None:
            with traced.rest_span("POST", "/v1/models/m:predict", {}):
                traced_scope.run(Call("rest", "Predict", MODEL), lambda call: None)

        return call

    try:
        result = {
            "metrics.observe": _per_call_us(
                lambda: metrics.observe(MODEL, "1", "Predict", "grpc", "OK", 0.001)
            ),
            "request wrapper (drain, in-flight, metrics)": _per_call_us(scope_call),
            "request log offer (sampling 0.01)": _per_call_us(
                lambda: request_log.offer_answer(MODEL, 1, "serving_default", None, arrays, outputs)
            ),
            **{
                f"request wrapper + span (sampling {ratio:g}, batch export)": _per_call_us(
                    traced_call(traced), 5000
                )
                for ratio, (_, traced) in providers.items()
            },
        }
    finally:
        request_log.close()
        for provider, _ in providers.values():
            provider.shutdown()
    return result


def _call_layers(
    signature: tf.types.experimental.ConcreteFunction, servable: ServableVersion
) -> dict[str, float]:
    """The model call at 1 example: on a ready tensor through `ConcreteFunction.__call__`
    (what the in-process floor pays) and through the flat path the server takes
    (`serving.tfcall`); the conversion of the request's array to a tensor, which both pay;
    and the floor's whole call against the server's (`ServableVersion.run`: the schema
    detector fused in, flat path, arrays in and out)."""
    from serving.tfcall import KeywordCall

    array = np.array(_examples(1), dtype=object)
    feed = {"examples": tf.constant(array)}
    flat = KeywordCall(signature)
    return {
        "floor: tf.constant + signature call + .numpy()": _per_call_us(
            lambda: signature(examples=tf.constant(array))["probabilities"].numpy(), 3000
        ),
        "server: ServableVersion.run (detector fused, flat call)": _per_call_us(
            lambda: servable.run("serving_default", {"examples": array}), 3000
        ),
        "signature call, keyword (ConcreteFunction.__call__)": _per_call_us(
            lambda: signature(**feed), 3000
        ),
        "signature call, flat (serving.tfcall)": _per_call_us(lambda: flat(feed), 3000),
        "tf.constant of the request's examples": _per_call_us(
            lambda: tf.constant(array, dtype=tf.string), 3000
        ),
    }


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def table(results: dict[str, Any]) -> str:
    """Renders the results as a Markdown table, with the targets checked.

    `cpu ms/req` is the bench process's CPU per request (all the work for in-process and
    service, the client's share for grpc and rest); `server cpu ms/req` the server process's.
    """
    lines = [
        "| path | examples/request | concurrency | p50 ms | p90 ms | p99 ms "
        "| requests/s | examples/s | cpu ms/req | server cpu ms/req |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    cells = results["cells"]
    for c in cells:
        lines.append(
            f"| {c['path']} | {c['batch']} | {c['concurrency']} | {c['p50_ms']:.2f} "
            f"| {c['p90_ms']:.2f} | {c['p99_ms']:.2f} | {c['rps']:.0f} "
            f"| {c['examples_per_s']:.0f} | {_ms(c.get('cpu_ms'))} "
            f"| {_ms(c.get('server_cpu_ms'))} |"
        )

    def cell(path: str, batch: int, conc: int) -> dict[str, Any] | None:
        return next(
            (c for c in cells if (c["path"], c["batch"], c["concurrency"]) == (path, batch, conc)),
            None,
        )

    notes = []
    floor1 = cell("in-process", 1, 1)
    empty1 = cell(EMPTY_GRPC, 1, 1)
    if empty1 and floor1:
        notes.append(
            f"- {EMPTY_GRPC} (Python gRPC alone, same bytes) p50 at 1 example, concurrency 1: "
            f"{empty1['p50_ms']:.2f} ms: the transport alone takes that much of the +1 ms "
            "allowed over the in-process call"
        )
    grpc_paths = sorted({c["path"] for c in cells if c["path"].startswith("grpc")})
    for path in grpc_paths:
        g = cell(path, 1, 1)
        if g and floor1:
            gap = g["p50_ms"] - floor1["p50_ms"]
            notes.append(
                f"- {path} p50 at 1 example, concurrency 1: {gap:+.2f} ms vs in-process "
                f"(target <= +1 ms): {'met' if gap <= 1 else 'NOT met'}"
                + (
                    f"; minus the transport ({EMPTY_GRPC}): "
                    f"{g['p50_ms'] - empty1['p50_ms'] - floor1['p50_ms']:+.2f} ms vs in-process"
                    if empty1
                    else ""
                )
            )
        for conc in sorted({c["concurrency"] for c in cells}):
            g, f = cell(path, 100, conc), cell("in-process", 100, conc)
            if g and f:
                ratio = g["rps"] / f["rps"]
                notes.append(
                    f"- {path} throughput at 100 examples, concurrency {conc}: {ratio:.2f}x "
                    f"in-process (target >= 0.8x): {'met' if ratio >= 0.8 else 'NOT met'}"
                )
                client, server, floor = g.get("cpu_ms"), g.get("server_cpu_ms"), f.get("cpu_ms")
                if client is not None and server is not None and floor:
                    # When the cores are the limit, requests/s go as 1 / CPU per request.
                    notes.append(
                        f"  CPU per request: {client + server:.2f} ms (client {client:.2f} + "
                        f"server {server:.2f}) vs in-process {floor:.2f} ms: "
                        f"{floor / (client + server):.2f}x"
                    )
    return "\n".join([*lines, "", *notes])


def main() -> int:
    """Runs the benchmark and writes JSON and Markdown results."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--duration", type=float, default=2.5, help="seconds per cell")
    p.add_argument("--rounds", type=int, default=2, help="interleaved rounds per cell")
    p.add_argument("--concurrency", default="1,8,32")
    p.add_argument("--batch", default="1,100")
    p.add_argument("--input_validation", default="enforce", choices=("enforce", "log", "off"))
    p.add_argument(
        "--baseline_source",
        default="",
        help="another checkout's root: also measure its server (path grpc-baseline), side by side",
    )
    p.add_argument(
        "--server_arg", action="append", default=[], help="extra server flag (repeatable)"
    )
    p.add_argument(
        "--variant",
        action="append",
        default=[],
        help="NAME=FLAGS: also measure this checkout's server with these flags added "
        "(space-separated; {workdir} = the bench's temp folder), path grpc+NAME",
    )
    p.add_argument(
        "--layers", action="store_true", help="also time each per-request layer in-process"
    )
    p.add_argument("--out", default="out/bench")
    p.add_argument("--empty_server", default="", help=argparse.SUPPRESS)  # PORT:ANSWERS (internal)
    args = p.parse_args()
    if args.empty_server:
        return _serve_empty(args.empty_server)
    variants = {}
    for item in args.variant:
        name, _, flags = item.partition("=")
        variants[name] = flags.split()
    layer_costs = layers() if args.layers else {}
    results = run(
        args.duration,
        [int(c) for c in args.concurrency.split(",")],
        [int(b) for b in args.batch.split(",")],
        args.input_validation,
        args.rounds,
        os.path.abspath(args.baseline_source) if args.baseline_source else None,
        args.server_arg,
        variants,
        call_layers=args.layers,
    )
    layer_costs.update(results.pop("call_layers_us", {}))
    results["layers_us"] = layer_costs
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, f"serving-{args.input_validation}.json"), "w") as f:
        json.dump(results, f, indent=1)
    md = table(results)
    if layer_costs:
        md += "\n\n| layer | us per request |\n|---|---:|\n" + "\n".join(
            f"| {name} | {us:.1f} |" for name, us in layer_costs.items()
        )
    with open(os.path.join(args.out, f"serving-{args.input_validation}.md"), "w") as f:
        f.write(md + "\n")
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
