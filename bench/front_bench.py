"""What the request-logging front adds per request: its gRPC and REST paths vs the backend direct.

Run: `make serving-bench` (runs this after the server bench), or from the repository root
`.venv/bin/python -m bench.front_bench --duration 4`. The pod of `kubeflow/tf-serving` runs as
the manifests start it (tests/serving/support/front_pod.py: `python -m serving` in place of
tensorflow_model_server with the Deployment's args, the front with its container's command,
its default sampling rate 0.01 unless `--sampling_rate` says otherwise); load comes from client
threads in this process, alternating between the front's ports and the backend's, in rounds.
Per path: p50/p90/p99, requests/s, and CPU per request of the front process and the backend.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import pathlib
import sys
import tempfile
from collections.abc import Callable
from typing import Any

import grpc
from tensorflow_serving.apis import predict_pb2

from bench.serving_bench import MODEL, PREDICT_METHOD, _examples, _measure_cpu, _summary
from serving import schema, tensors
from tests.serving.support import fixture, front_pod

# The goal this bench reports against (issue 19): the front adds at most 1 ms at p50.
P50_BUDGET_MS = 1.0


def _grpc_call(address: str, raw: bytes, concurrency: int) -> Callable[[int], None]:
    channels = [grpc.insecure_channel(address) for _ in range(concurrency)]
    stubs = [c.unary_unary(PREDICT_METHOD) for c in channels]

    def call(i: int) -> None:
        stubs[i](raw, timeout=60)

    return call


def _rest_call(url: str, body: bytes, concurrency: int) -> Callable[[int], None]:
    host, port = url.removeprefix("http://").split(":")
    connections = [
        http.client.HTTPConnection(host, int(port), timeout=60) for _ in range(concurrency)
    ]
    path = f"/v1/models/{MODEL}:predict"
    headers = {"Content-Type": "application/json"}

    def call(i: int) -> None:
        connection = connections[i]
        connection.request("POST", path, body, headers)
        answer = connection.getresponse()
        answer.read()
        if answer.status != 200:
            raise RuntimeError(f"REST predict answered {answer.status}")

    return call


def run(duration_s: float, rounds: int, concurrencies: list[int], rate: str) -> dict[str, Any]:
    """Starts the pod, measures each path, stops it; returns the cells."""
    import schemas

    with tempfile.TemporaryDirectory(prefix="front-bench-") as tmp:
        root = pathlib.Path(tmp)
        models = root / "models"
        features = schema.load_features(schemas.schema_path("taxi"))
        fixture.build_model(str(models / MODEL / "1"), features, seed=1)
        flags = {"request_log_sampling_rate": rate} if rate else {}
        pod = front_pod.start_pod(root, str(models), front_flags=flags)
        try:
            return _measure_pod(pod, duration_s, rounds, concurrencies)
        finally:
            pod.stop()


def _measure_pod(
    pod: front_pod.Pod, duration_s: float, rounds: int, concurrencies: list[int]
) -> dict[str, Any]:
    examples = _examples(1)
    request = predict_pb2.PredictRequest()
    request.model_spec.name = MODEL
    request.inputs["examples"].CopyFrom(tensors.string_tensor(examples))
    raw = request.SerializeToString()
    body = json.dumps({"instances": [{"b64": base64.b64encode(examples[0]).decode()}]}).encode()
    backend_pid, front_pid = pod.processes[0].pid, pod.processes[1].pid
    cells = []
    for concurrency in concurrencies:
        calls = {
            "grpc direct": _grpc_call(pod.backend_grpc, raw, concurrency),
            "grpc front": _grpc_call(pod.grpc, raw, concurrency),
            "rest direct": _rest_call(pod.backend_rest, body, concurrency),
            "rest front": _rest_call(pod.rest, body, concurrency),
        }
        for call in calls.values():
            for _ in range(100):
                call(0)
        parts: dict[str, list[dict[str, Any]]] = {name: [] for name in calls}
        fronts: dict[str, list[float]] = {name: [] for name in calls}
        for _ in range(rounds):
            for name, call in calls.items():
                front0 = front_pod_cpu(front_pid)
                parts[name].append(
                    _measure_cpu(call, concurrency, duration_s / rounds, backend_pid)
                )
                fronts[name].append(front_pod_cpu(front_pid) - front0)
        for name in calls:
            cell = _summary(parts[name])
            cell["front_cpu_ms"] = sum(fronts[name]) / max(cell["requests"], 1) * 1e3
            cell.update(path=name, concurrency=concurrency)
            cells.append(cell)
            print(
                f"{name:12s} conc={concurrency:<2d} p50={cell['p50_ms']:.2f}ms "
                f"p99={cell['p99_ms']:.2f}ms rps={cell['rps']:.0f} "
                f"front_cpu={cell['front_cpu_ms']:.3f}ms backend_cpu={cell['server_cpu_ms']:.3f}ms",
                flush=True,
            )
    written = pod.counter("serving_request_log_written_total")
    dropped = pod.counter("serving_request_log_dropped_total")
    return {"cells": cells, "records_written": written, "records_dropped": dropped}


def front_pod_cpu(pid: int) -> float:
    import psutil

    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


def table(results: dict[str, Any], rate: str) -> str:
    """Markdown: each path, and what the front adds over the direct path."""
    lines = [
        f"Request-log front (sampling rate {rate or '0.01, the manifest default'}; "
        f"{results['records_written']:.0f} records written, {results['records_dropped']:.0f} "
        "dropped), Predict of 1 example:",
        "",
        "| path | concurrency | p50 ms | p99 ms | req/s | front CPU ms/req | backend CPU ms/req |"
        " added p50 ms | added p99 ms |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    by_key = {(c["path"], c["concurrency"]): c for c in results["cells"]}
    for c in results["cells"]:
        added = ("", "")
        if c["path"].endswith("front"):
            direct = by_key[(c["path"].replace("front", "direct"), c["concurrency"])]
            added = (
                f"{c['p50_ms'] - direct['p50_ms']:+.2f}",
                f"{c['p99_ms'] - direct['p99_ms']:+.2f}",
            )
        lines.append(
            f"| {c['path']} | {c['concurrency']} | {c['p50_ms']:.2f} | {c['p99_ms']:.2f} | "
            f"{c['rps']:.0f} | {c['front_cpu_ms']:.3f} | {c['server_cpu_ms'] or 0:.3f} | "
            f"{added[0]} | {added[1]} |"
        )
    lines.append("")
    lines.append(f"Goal: added p50 <= {P50_BUDGET_MS:.1f} ms with logging on at default sampling.")
    return "\n".join(lines)


def main() -> int:
    """Runs the benchmark; writes out/bench/front.{json,md}."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--duration", type=float, default=4.0, help="seconds per path and concurrency")
    p.add_argument("--rounds", type=int, default=4, help="interleaved rounds")
    p.add_argument("--concurrency", default="1,8")
    p.add_argument("--sampling_rate", default="", help="front's rate ('' = the manifest's)")
    p.add_argument("--out", default="out/bench")
    args = p.parse_args()
    results = run(
        args.duration,
        args.rounds,
        [int(c) for c in args.concurrency.split(",")],
        args.sampling_rate,
    )
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "front.json"), "w") as f:
        json.dump(results, f, indent=1)
    md = table(results, args.sampling_rate)
    with open(os.path.join(args.out, "front.md"), "w") as f:
        f.write(md + "\n")
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
