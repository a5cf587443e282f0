"""The client CLI against the embedded server, and the server CLI as a real process."""

from __future__ import annotations

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from serving import client_cli
from serving.client import ClientSettings, ModelRef, PredictionClient
from tests.serving.conftest import MODEL, Target, install_version
from tests.serving.support import fixture


def _csv(path: Path, rows: list[dict[str, object]]) -> str:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=[*rows[0], "tips"])
        writer.writeheader()
        for row in rows:
            writer.writerow({**{k: "" if v is None else v for k, v in row.items()}, "tips": "1.0"})
    return str(path)


def test_client_cli(target: Target, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = fixture.sample_rows()
    csv_path = _csv(tmp_path / "rows.csv", rows)
    json_path = tmp_path / "rows.jsonl"
    json_path.write_text("\n".join(json.dumps(r) for r in rows))
    common = ["--target", target.grpc, "--model", target.model]
    assert client_cli.main(["predict", *common, "--csv", csv_path, "--batch_size", "5"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [len(line["probabilities"]) for line in lines] == [5, 3]
    assert client_cli.main(["classify", *common, "--json", str(json_path)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["classes"]) == len(rows)
    assert (
        client_cli.main(
            ["regress", "--rest", target.rest, "--model", target.model, "--csv", csv_path]
        )
        == 0
    )
    assert len(json.loads(capsys.readouterr().out)["values"]) == len(rows)
    assert client_cli.main(["status", *common]) == 0
    assert json.loads(capsys.readouterr().out)[0]["state"] == "AVAILABLE"
    assert (
        client_cli.main(["predict", "--target", target.grpc, "--model", "nope", "--csv", csv_path])
        == 1
    )
    assert "NOT_FOUND" in capsys.readouterr().err
    bad = _csv(tmp_path / "bad.csv", [{**rows[0], "fare": None}])
    assert client_cli.main(["predict", *common, "--csv", bad]) == 2
    assert "fare" in capsys.readouterr().err


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_server_process_serves_and_stops_on_sigterm(
    tmp_path: Path, model_library: dict[int, str], examples: list[bytes]
) -> None:
    base = str(tmp_path / MODEL)
    install_version(model_library, 1, base, 1)
    port, rest = _free_port(), _free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "serving",
            f"--port={port}",
            f"--rest_api_port={rest}",
            "--host=127.0.0.1",
            f"--model_base_path={base}",
            "--file_system_poll_wait_seconds=0.5",
        ],
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
    )
    try:
        with PredictionClient(ClientSettings(f"127.0.0.1:{port}", deadline_s=30)) as c:
            assert c.wait_until_available(ModelRef(MODEL), timeout_s=90) == 1
            assert c.predict(ModelRef(MODEL), examples).version == 1
        process.send_signal(signal.SIGTERM)
        assert process.wait(60) == 0
        logs = [
            json.loads(line) for line in process.stderr.read().splitlines() if line.startswith("{")
        ]  # type: ignore[union-attr]
        messages = [entry["message"] for entry in logs]
        assert any("AVAILABLE" in m for m in messages) and any(
            "Server stopped" in m for m in messages
        )
        assert all({"ts", "level", "logger"} <= set(entry) for entry in logs)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
        time.sleep(0)
