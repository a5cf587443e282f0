"""submit: kfp.Client against a local HTTP endpoint that checks every request it receives."""

import http.server
import json
import threading
import urllib.parse

import pytest

from pipeline.kubeflow_v2 import __main__ as cli
from pipeline.kubeflow_v2 import compiler
from pipeline.kubeflow_v2 import submit as submit_lib


class FakeKfp(http.server.ThreadingHTTPServer):
    """The KFP v2beta1 endpoints kfp.Client uses to start a run; records each request."""

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.requests: list[tuple[str, str, dict, dict]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):  # Keep test output quiet.
        pass

    def _reply(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _record(self, body: dict) -> str:
        path = urllib.parse.urlparse(self.path).path
        self.server.requests.append((self.command, self.path, dict(self.headers), body))
        if self.headers.get("Authorization") != "Bearer secret-token":
            self._reply(401, {"error": "missing bearer token"})
            return ""
        return path

    def do_GET(self):
        path = self._record({})
        if path == "/apis/v2beta1/healthz":
            self._reply(200, {"multi_user": False})
        elif path == "/apis/v2beta1/experiments":
            self._reply(200, {"experiments": [], "total_size": 0})
        elif path:
            self._reply(404, {"error": path})

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"{}")
        path = self._record(body)
        if path == "/apis/v2beta1/experiments":
            self._reply(200, {"experiment_id": "exp-1", "display_name": body.get("display_name")})
        elif path == "/apis/v2beta1/runs":
            spec = body.get("pipeline_spec", {})
            ok = (
                body.get("experiment_id") == "exp-1"
                and spec.get("pipeline_spec", {}).get("pipelineInfo", {}).get("name")
                == "chicago-taxi"
                and "kubernetes" in spec.get("platform_spec", {}).get("platforms", {})
            )
            if ok:
                self._reply(200, {"run_id": "run-42", "display_name": body.get("display_name")})
            else:
                self._reply(400, {"error": "bad run body"})
        elif path:
            self._reply(404, {"error": path})


@pytest.fixture
def fake_kfp():
    server = FakeKfp()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def spec_file(compiled, tmp_path):
    return compiler.write_spec(compiled, str(tmp_path / "pipeline.yaml"))


def test_submit_sends_spec_parameters_and_token(fake_kfp, spec_file, monkeypatch):
    monkeypatch.setenv(submit_lib.TOKEN_ENV, "secret-token")
    request = submit_lib.SubmitRequest(
        spec_path=spec_file,
        host=fake_kfp.url,
        namespace="team-a",
        experiment="taxi-exp",
        run_name="nightly",
        parameters={"data_root": "/mnt/taxi/data/v2"},
    )
    url = submit_lib.submit(request)
    assert url == f"{fake_kfp.url}/#/runs/details/run-42"
    calls = [(method, urllib.parse.urlparse(path).path) for method, path, _, _ in fake_kfp.requests]
    assert calls == [
        ("GET", "/apis/v2beta1/experiments"),
        ("POST", "/apis/v2beta1/experiments"),
        ("POST", "/apis/v2beta1/runs"),
    ]
    list_query = urllib.parse.parse_qs(urllib.parse.urlparse(fake_kfp.requests[0][1]).query)
    assert list_query["namespace"] == ["team-a"]
    assert fake_kfp.requests[1][3] == {"display_name": "taxi-exp", "namespace": "team-a"}
    run = fake_kfp.requests[2][3]
    assert run["display_name"] == "nightly"
    assert run["runtime_config"]["parameters"] == {"data_root": "/mnt/taxi/data/v2"}
    trainer = run["pipeline_spec"]["platform_spec"]["platforms"]["kubernetes"]["deploymentSpec"][
        "executors"
    ]["Trainer_executor"]
    assert trainer["tolerations"][0]["key"] == "nvidia.com/gpu"


def test_submit_without_token_is_refused_clearly(fake_kfp, spec_file, monkeypatch):
    monkeypatch.delenv(submit_lib.TOKEN_ENV, raising=False)
    request = submit_lib.SubmitRequest(spec_path=spec_file, host=fake_kfp.url, namespace="team-a")
    with pytest.raises(submit_lib.SubmitError, match="refused the request: HTTP 401"):
        submit_lib.submit(request)


def test_bad_host_and_missing_spec_give_clear_errors(spec_file, tmp_path, capsys):
    assert cli.main(["submit", "--spec", spec_file, "--host", "http://127.0.0.1:1"]) == 1
    assert "error: cannot reach KFP at http://127.0.0.1:1" in capsys.readouterr().err
    assert cli.main(["submit", "--spec", spec_file, "--host", "kfp.example.com"]) == 1
    assert "must be an http:// or https:// URL" in capsys.readouterr().err
    missing = str(tmp_path / "none.yaml")
    assert cli.main(["submit", "--spec", missing, "--host", "http://127.0.0.1:1"]) == 1
    assert f"pipeline spec {missing!r} does not exist" in capsys.readouterr().err
    assert (
        cli.main(["submit", "--spec", spec_file, "--host", "http://h", "--param", "steps=3"]) == 1
    )
    assert "unknown pipeline parameters ['steps']" in capsys.readouterr().err


def test_dry_run_prints_request_and_sends_nothing(fake_kfp, spec_file, capsys, monkeypatch):
    monkeypatch.setenv(submit_lib.TOKEN_ENV, "secret-token")
    argv = [
        "submit",
        "--spec",
        spec_file,
        "--host",
        fake_kfp.url,
        "--param",
        "data_root=/d",
        "--dry-run",
    ]
    assert cli.main(argv) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["parameters"] == {"data_root": "/d"}
    assert printed["auth_token"] == f"from ${submit_lib.TOKEN_ENV}"
    assert "secret-token" not in json.dumps(printed)
    assert fake_kfp.requests == []
