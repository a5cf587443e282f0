"""Predict latency and throughput: gRPC and REST against the server, vs the in-process floor.

Run: `make serving-bench` (or `.venv/bin/python bench/serving_bench.py --duration 3`). The server
runs in its own process (as in production); load comes from client threads in this one.
"""

from __future__ import annotations

import argparse
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

import numpy as np
import tensorflow as tf

import schemas
from serving import fixture, schema
from serving.client import ClientSettings, ModelRef, PredictionClient, RestClient
from serving.errors import ServingError
from serving.examples import ExampleBuilder

MODEL = "chicago_taxi"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _examples(n: int) -> list[bytes]:
    builder = ExampleBuilder(schema.load_features(schemas.schema_path("taxi")))
    rows = fixture.sample_rows()
    return [builder.build(rows[i % len(rows)]).SerializeToString() for i in range(n)]


def _measure(call: Callable[[int], None], concurrency: int, duration_s: float) -> dict[str, Any]:
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
            except ServingError:
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
    elapsed = time.perf_counter() - begin
    flat = np.array([x for lst in latencies for x in lst]) * 1e3
    return {
        "requests": int(flat.size),
        "errors": errors[0],
        "p50_ms": float(np.percentile(flat, 50)),
        "p90_ms": float(np.percentile(flat, 90)),
        "p99_ms": float(np.percentile(flat, 99)),
        "rps": flat.size / elapsed,
    }


def run(
    duration_s: float, concurrencies: list[int], batches: list[int], validation: str
) -> dict[str, Any]:
    """Builds a model, starts the server in a subprocess, and measures every cell."""
    workdir = tempfile.mkdtemp(prefix="serving-bench-")
    features = schema.load_features(schemas.schema_path("taxi"))
    base = os.path.join(workdir, MODEL)
    fixture.build_model(os.path.join(base, "1"), features, hidden=64)
    grpc_port, rest_port = _free_port(), _free_port()
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
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
        ],
        env=env,
    )
    results: dict[str, Any] = {"cells": [], "validation": validation, "duration_s": duration_s}
    try:
        grpc_client = PredictionClient(
            ClientSettings(
                f"127.0.0.1:{grpc_port}", deadline_s=120, max_retries=60, backoff_max_s=1.0
            )
        )
        model = ModelRef(MODEL)
        grpc_client.predict(model, _examples(1))  # retries until the server is up and loaded
        signature = tf.saved_model.load(os.path.join(base, "1")).signatures["serving_default"]
        rest_clients = [
            RestClient(f"http://127.0.0.1:{rest_port}", 60) for _ in range(max(concurrencies))
        ]
        for batch in batches:
            examples = _examples(batch)
            tensor_in = np.array(examples, dtype=object)

            def in_process(_: int, x: np.ndarray = tensor_in) -> None:
                signature(examples=tf.constant(x))["probabilities"].numpy()

            def over_grpc(_: int, e: list[bytes] = examples) -> None:
                grpc_client.predict(model, e)

            def over_rest(i: int, e: list[bytes] = examples) -> None:
                rest_clients[i].predict(model, e)

            calls: dict[str, Callable[[int], None]] = {
                "in-process": in_process,
                "grpc": over_grpc,
                "rest": over_rest,
            }
            for name, call in calls.items():
                for _ in range(20):
                    call(0)
                for concurrency in concurrencies:
                    cell = _measure(call, concurrency, duration_s)
                    cell.update(
                        path=name,
                        batch=batch,
                        concurrency=concurrency,
                        examples_per_s=cell["rps"] * batch,
                    )
                    results["cells"].append(cell)
                    print(
                        f"{name:10s} batch={batch:<3d} conc={concurrency:<2d} "
                        f"p50={cell['p50_ms']:.2f}ms p90={cell['p90_ms']:.2f}ms "
                        f"p99={cell['p99_ms']:.2f}ms rps={cell['rps']:.0f} errors={cell['errors']}",
                        flush=True,
                    )
        grpc_client.close()
        for c in rest_clients:
            c.close()
    finally:
        server.terminate()
        server.wait(60)
    return results


def table(results: dict[str, Any]) -> str:
    """Renders the results as a Markdown table, with the targets checked."""
    lines = [
        "| path | examples/request | concurrency | p50 ms | p90 ms | p99 ms "
        "| requests/s | examples/s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    cells = results["cells"]
    for c in cells:
        lines.append(
            f"| {c['path']} | {c['batch']} | {c['concurrency']} | {c['p50_ms']:.2f} "
            f"| {c['p90_ms']:.2f} | {c['p99_ms']:.2f} | {c['rps']:.0f} "
            f"| {c['examples_per_s']:.0f} |"
        )

    def cell(path: str, batch: int, conc: int) -> dict[str, Any] | None:
        return next(
            (c for c in cells if (c["path"], c["batch"], c["concurrency"]) == (path, batch, conc)),
            None,
        )

    notes = []
    g, f = cell("grpc", 1, 1), cell("in-process", 1, 1)
    if g and f:
        gap = g["p50_ms"] - f["p50_ms"]
        notes.append(
            f"- gRPC p50 at 1 example, concurrency 1: {gap:+.2f} ms vs in-process "
            f"(target <= +1 ms): {'met' if gap <= 1 else 'NOT met'}"
        )
    for conc in sorted({c["concurrency"] for c in cells}):
        g, f = cell("grpc", 100, conc), cell("in-process", 100, conc)
        if g and f:
            ratio = g["rps"] / f["rps"]
            notes.append(
                f"- gRPC throughput at 100 examples, concurrency {conc}: {ratio:.2f}x "
                f"in-process (target >= 0.8x): {'met' if ratio >= 0.8 else 'NOT met'}"
            )
    return "\n".join([*lines, "", *notes])


def main() -> int:
    """Runs the benchmark and writes JSON and Markdown results."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--duration", type=float, default=3.0, help="seconds per cell")
    p.add_argument("--concurrency", default="1,8,32")
    p.add_argument("--batch", default="1,100")
    p.add_argument("--input_validation", default="enforce", choices=("enforce", "log", "off"))
    p.add_argument("--out", default="out/bench")
    args = p.parse_args()
    results = run(
        args.duration,
        [int(c) for c in args.concurrency.split(",")],
        [int(b) for b in args.batch.split(",")],
        args.input_validation,
    )
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, f"serving-{args.input_validation}.json"), "w") as f:
        json.dump(results, f, indent=1)
    md = table(results)
    with open(os.path.join(args.out, f"serving-{args.input_validation}.md"), "w") as f:
        f.write(md + "\n")
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
