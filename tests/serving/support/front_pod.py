"""The TF Serving pod of the manifests, run here: its containers' own command lines, localized.

`python -m serving` stands in for `/usr/bin/tensorflow_model_server` with the Deployment's
args (our CLI takes TF Serving's flags), and the request-log front runs with its container's
command and args. Only ports, mount paths and the bind address are rewritten (loopback, free
ports, temp folders); everything else is the manifest's.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any

from tests.serving.support import kustomize

ROOT = pathlib.Path(__file__).resolve().parents[3]
OVERLAY = ROOT / "kubeflow/tf-serving/overlays/pvc"
FRONT = "request-log-front"
TF_SERVING = "tf-serving"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rendered_pod(overlay: pathlib.Path = OVERLAY) -> tuple[dict[str, Any], dict[str, str]]:
    """(the Deployment's pod spec, the tf-serving ConfigMap's files) of an overlay."""
    docs = {(d["kind"], d["metadata"]["name"]): d for d in kustomize.render(overlay)}
    pod = docs[("Deployment", "tf-serving")]["spec"]["template"]["spec"]
    return pod, docs[("ConfigMap", "tf-serving-config")]["data"]


def container(pod: Mapping[str, Any], name: str) -> dict[str, Any]:
    return next(c for c in pod["containers"] if c["name"] == name)


def localize(
    args: list[str], ports: Mapping[int, int], paths: Mapping[str, str], **flags: str
) -> list[str]:
    """The args with ports, absolute paths and 0.0.0.0 replaced; `flags` override values."""
    out = []
    for arg in args:
        name, sep, value = arg.partition("=")
        if not sep:
            out.append(arg)
            continue
        key = name.lstrip("-")
        if key in flags:
            value = flags.pop(key)
        elif value == "0.0.0.0":
            value = "127.0.0.1"
        elif value.isdigit() and int(value) in ports:
            value = str(ports[int(value)])
        else:
            value = re.sub(r":(\d+)\b", lambda m: ":" + str(ports.get(int(m[1]), m[1])), value)
            for prefix, local in paths.items():
                if value == prefix or value.startswith(prefix + "/"):
                    value = local + value[len(prefix) :]
        out.append(f"{name}={value}")
    out.extend(f"--{k}={v}" for k, v in flags.items())
    return out


@dataclasses.dataclass
class Pod:
    """The two processes, their logs and the ports clients use."""

    grpc: str
    rest: str
    backend_grpc: str
    backend_rest: str
    metrics: str
    request_logs: str
    processes: list[subprocess.Popen[bytes]]
    logs: list[pathlib.Path]

    def stop(self) -> None:
        for process in reversed(self.processes):
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def counter(self, name: str) -> float:
        """A counter of the front's metrics endpoint (summed over labels)."""
        with urllib.request.urlopen(self.metrics, timeout=5) as r:
            text = r.read().decode()
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith(name + " ") or line.startswith(name + "{")
        )

    def wait_written(self, expected: int, timeout_s: float = 30.0) -> None:
        """Waits until the front has written `expected` records."""
        deadline = time.monotonic() + timeout_s
        while self.counter("serving_request_log_written_total") < expected:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{self.counter('serving_request_log_written_total')} records written, "
                    f"{expected} expected:\n{self.output()}"
                )
            time.sleep(0.1)

    def output(self) -> str:
        return "\n".join(p.read_text(errors="replace")[-4000:] for p in self.logs)


def start_pod(
    root: pathlib.Path,
    models: str,
    front_flags: Mapping[str, str] | None = None,
    model: str = "chicago_taxi",
    timeout_s: float = 180.0,
) -> Pod:
    """Starts the pod's two containers' commands here; returns once a version is served.

    Args:
      root: Temp folder for the ConfigMap files, request logs and process logs.
      models: Folder standing in for the models claim (`<models>/<model>/<version>`).
      front_flags: Front flag values replacing the manifest's (e.g. the sampling rate).
      model: The model whose metadata means "ready".
      timeout_s: How long the server may take to load.
    """
    pod, config_files = rendered_pod()
    etc = root / "etc-tf-serving"
    etc.mkdir(parents=True, exist_ok=True)
    request_logs = str(root / "request-logs")
    paths = {"/etc/tf-serving": str(etc), "/models": models, "/request-logs": request_logs}
    for name, text in config_files.items():
        (etc / name).write_text(text.replace('"/models/', f'"{models}/'))
    ports = {p: free_port() for p in (8500, 8501, 8502, 8510, 8511)}
    tfs, front = container(pod, TF_SERVING), container(pod, FRONT)
    assert tfs["command"] == ["/usr/bin/tensorflow_model_server"], tfs["command"]
    assert front["command"][0] == "python", front["command"]
    commands = [
        [
            sys.executable,
            "-m",
            "serving",
            *localize(tfs["args"], ports, paths),
            "--log_format=text",
        ],
        [
            sys.executable,
            *front["command"][1:],
            *localize(front["args"], ports, paths, **dict(front_flags or {})),
            "--log_format=text",
        ],
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
    processes, logs = [], []
    for i, command in enumerate(commands):
        log = root / f"process-{i}.log"
        logs.append(log)
        with open(log, "wb") as out:
            processes.append(
                subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
            )
    started = Pod(
        f"127.0.0.1:{ports[8500]}",
        f"http://127.0.0.1:{ports[8501]}",
        f"127.0.0.1:{ports[8510]}",
        f"http://127.0.0.1:{ports[8511]}",
        f"http://127.0.0.1:{ports[8502]}/metrics",
        request_logs,
        processes,
        logs,
    )
    deadline = time.monotonic() + timeout_s
    url = f"{started.rest}/v1/models/{model}/metadata"
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                json.load(r)
                return started
        except (urllib.error.URLError, OSError, ValueError):
            if time.monotonic() > deadline or any(p.poll() is not None for p in processes):
                started.stop()
                raise AssertionError(
                    f"the pod did not serve {model}:\n{started.output()}"
                ) from None
            time.sleep(0.5)
