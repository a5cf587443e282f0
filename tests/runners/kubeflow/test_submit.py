"""submit: kfp.Client against a local HTTP endpoint that checks every request it receives."""

import dataclasses
import http.server
import json
import threading
import urllib.parse

import pytest

from commands import cli
from runners.kubeflow import compiler
from runners.kubeflow import submit as submit_lib

API = "/apis/v2beta1"


class FakeKfp(http.server.ThreadingHTTPServer):
    """The KFP v2beta1 endpoints kfp.Client uses for runs, uploads and recurring runs.

    Records each request; `pipelines` holds the pipelines uploaded so far (name -> id).
    """

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.requests: list[tuple[str, str, dict, object]] = []
        self.pipelines: dict[str, str] = {}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def calls(self) -> list[tuple[str, str]]:
        return [(method, urllib.parse.urlparse(path).path) for method, path, _, _ in self.requests]

    def body(self, method: str, path: str) -> object:
        return next(
            b
            for m, p, _, b in self.requests
            if (m, urllib.parse.urlparse(p).path) == (method, path)
        )

    def query(self, method: str, path: str) -> dict[str, list[str]]:
        raw = next(
            p
            for m, p, _, _ in self.requests
            if (m, urllib.parse.urlparse(p).path) == (method, path)
        )
        return urllib.parse.parse_qs(urllib.parse.urlparse(raw).query)


def _spec_ok(spec: dict) -> bool:
    return spec.get("pipeline_spec", {}).get("pipelineInfo", {}).get(
        "name"
    ) == "chicago-taxi" and "kubernetes" in spec.get("platform_spec", {}).get("platforms", {})


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

    def _record(self, body: object) -> str:
        path = urllib.parse.urlparse(self.path).path
        self.server.requests.append((self.command, self.path, dict(self.headers), body))
        authorization = self.headers.get("Authorization", "")
        if authorization.startswith("Bearer eyJ"):
            # Like proxies that echo the request's credentials in their error page.
            self._reply(403, {"error": f"RBAC: access denied for {authorization}"})
            return ""
        if authorization != "Bearer secret-token":
            self._reply(401, {"error": "missing bearer token"})
            return ""
        return path

    def do_GET(self):
        path = self._record({})
        query = urllib.parse.parse_qs(urllib.parse.urlparse(self.path).query)
        if path == f"{API}/healthz":
            self._reply(200, {"multi_user": False})
        elif path == f"{API}/experiments":
            self._reply(200, {"experiments": [], "total_size": 0})
        elif path == f"{API}/pipelines":
            wanted = json.loads(query["filter"][0])["predicates"][0]["stringValue"]
            found = [
                {"pipeline_id": pid, "display_name": name}
                for name, pid in self.server.pipelines.items()
                if name == wanted
            ]
            self._reply(200, {"pipelines": found, "total_size": len(found)})
        elif path.startswith(f"{API}/pipelines/") and path.endswith("/versions"):
            pid = path.split("/")[-2]
            self._reply(
                200,
                {"pipeline_versions": [{"pipeline_id": pid, "pipeline_version_id": f"{pid}-v1"}]},
            )
        elif path:
            self._reply(404, {"error": path})

    def do_POST(self):
        raw = self.rfile.read(int(self.headers["Content-Length"]))
        multipart = self.headers.get("Content-Type", "").startswith("multipart/form-data")
        body = raw if multipart else json.loads(raw or b"{}")
        path = self._record(body)
        query = urllib.parse.parse_qs(urllib.parse.urlparse(self.path).query)
        spec_uploaded = multipart and b"SourceFingerprint" in raw and b"pipelineInfo" in raw
        if path == f"{API}/experiments":
            self._reply(200, {"experiment_id": "exp-1", "display_name": body.get("display_name")})
        elif path == f"{API}/pipelines/upload" and spec_uploaded:
            pid = f"p-{len(self.server.pipelines) + 1}"
            self.server.pipelines[query["name"][0]] = pid
            self._reply(200, {"pipeline_id": pid, "display_name": query["name"][0]})
        elif path == f"{API}/pipelines/upload_version" and spec_uploaded:
            pid = query["pipelineid"][0]
            self._reply(200, {"pipeline_id": pid, "pipeline_version_id": f"{pid}-v2"})
        elif path in (f"{API}/runs", f"{API}/recurringruns"):
            reference = body.get("pipeline_version_reference") or {}
            source_ok = _spec_ok(body.get("pipeline_spec") or {}) or (
                reference.get("pipeline_version_id", "").startswith(
                    reference.get("pipeline_id", "?")
                )
            )
            if body.get("experiment_id") == "exp-1" and source_ok:
                key = "run_id" if path.endswith("/runs") else "recurring_run_id"
                self._reply(200, {key: "run-42", "display_name": body.get("display_name")})
            else:
                self._reply(400, {"error": "bad run body"})
        elif path:
            self._reply(404 if not multipart else 400, {"error": path})


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


def test_run_sends_spec_parameters_root_and_token(fake_kfp, spec_file, monkeypatch):
    monkeypatch.setenv(submit_lib.TOKEN_ENV, "secret-token")
    request = submit_lib.SubmitRequest(
        spec_path=spec_file,
        host=fake_kfp.url,
        allow_http_token=True,  # a local test endpoint
        namespace="team-a",
        experiment="taxi-exp",
        run_name="nightly",
        parameters={"source_uri": "/mnt/taxi/data/2024-06"},
    )
    submitted = submit_lib.submit(request)
    assert submitted == submit_lib.Submitted(f"{fake_kfp.url}/#/runs/details/run-42")
    assert fake_kfp.calls() == [
        ("GET", f"{API}/healthz"),  # submit's own probe, with timeouts, before kfp.Client
        ("GET", f"{API}/experiments"),
        ("POST", f"{API}/experiments"),
        ("POST", f"{API}/runs"),
    ]
    assert fake_kfp.query("GET", f"{API}/experiments")["namespace"] == ["team-a"]
    assert fake_kfp.body("POST", f"{API}/experiments") == {
        "display_name": "taxi-exp",
        "namespace": "team-a",
    }
    run = fake_kfp.body("POST", f"{API}/runs")
    assert run["display_name"] == "nightly"
    # The backend never reads defaultPipelineRoot: the compiled root travels with the run.
    assert run["runtime_config"] == {
        "parameters": {"source_uri": "/mnt/taxi/data/2024-06"},
        "pipeline_root": "minio://mlpipeline/v2/artifacts",
    }
    tasks = run["pipeline_spec"]["pipeline_spec"]["root"]["dag"]["tasks"]
    # No caching override was asked for: the compiled options go through unchanged.
    assert tasks["DataPrep"]["cachingOptions"] == {"enableCache": True}
    assert tasks["SourceFingerprint"]["cachingOptions"] == {}
    trainer = run["pipeline_spec"]["platform_spec"]["platforms"]["kubernetes"]["deploymentSpec"][
        "executors"
    ]["Trainer_executor"]
    assert trainer["tolerations"][0]["key"] == "nvidia.com/gpu"


def test_no_cache_switches_caching_off_for_every_step(fake_kfp, spec_file, monkeypatch):
    monkeypatch.setenv(submit_lib.TOKEN_ENV, "secret-token")
    request = submit_lib.SubmitRequest(
        spec_path=spec_file,
        host=fake_kfp.url,
        disable_caching=True,
        pipeline_root="gs://b/r",
        allow_http_token=True,
    )
    submit_lib.submit(request)
    run = fake_kfp.body("POST", f"{API}/runs")
    assert run["runtime_config"]["pipeline_root"] == "gs://b/r"
    tasks = run["pipeline_spec"]["pipeline_spec"]["root"]["dag"]["tasks"]
    assert {name: task.get("cachingOptions") for name, task in tasks.items()} == {
        name: {} for name in tasks
    }


def test_upload_creates_the_pipeline_then_adds_versions_and_schedules(
    fake_kfp, spec_file, monkeypatch
):
    monkeypatch.setenv(submit_lib.TOKEN_ENV, "secret-token")
    request = submit_lib.SubmitRequest(
        spec_path=spec_file,
        host=fake_kfp.url,
        allow_http_token=True,  # a local test endpoint
        pipeline_name="taxi",
        cron="0 0 3 * * *",
        parameters={"source_uri": "gs://bucket/taxi"},
    )
    first = submit_lib.submit(request)
    assert first == submit_lib.Submitted(
        f"{fake_kfp.url}/#/recurringrun/details/run-42", "p-1", "p-1-v1"
    )
    assert fake_kfp.calls() == [
        ("GET", f"{API}/healthz"),  # submit's own probe
        ("GET", f"{API}/healthz"),  # no namespace given: kfp.Client asks if KFP is multi-user
        ("GET", f"{API}/experiments"),
        ("POST", f"{API}/experiments"),
        ("GET", f"{API}/pipelines"),
        ("POST", f"{API}/pipelines/upload"),
        ("GET", f"{API}/pipelines/p-1/versions"),
        ("POST", f"{API}/recurringruns"),
    ]
    upload = fake_kfp.query("POST", f"{API}/pipelines/upload")
    assert upload["name"] == ["taxi"]
    assert upload["description"][0].startswith("Steps: SourceFingerprint:")
    recurring = fake_kfp.body("POST", f"{API}/recurringruns")
    assert recurring["trigger"] == {"cron_schedule": {"cron": "0 0 3 * * *"}}
    assert recurring["pipeline_version_reference"] == {
        "pipeline_id": "p-1",
        "pipeline_version_id": "p-1-v1",
    }
    assert "pipeline_spec" not in recurring
    assert (int(recurring["max_concurrency"]), recurring["no_catchup"]) == (1, True)
    assert recurring["runtime_config"]["pipeline_root"] == "minio://mlpipeline/v2/artifacts"

    fake_kfp.requests.clear()
    second = submit_lib.submit(dataclasses.replace(request, cron="", version_name="v-2"))
    assert second.version_id == "p-1-v2"
    version = fake_kfp.query("POST", f"{API}/pipelines/upload_version")
    assert (version["name"], version["pipelineid"]) == (["v-2"], ["p-1"])
    assert fake_kfp.body("POST", f"{API}/runs")["pipeline_version_reference"] == {
        "pipeline_id": "p-1",
        "pipeline_version_id": "p-1-v2",
    }


def test_submit_without_token_is_refused_clearly(fake_kfp, spec_file, monkeypatch):
    monkeypatch.delenv(submit_lib.TOKEN_ENV, raising=False)
    request = submit_lib.SubmitRequest(spec_path=spec_file, host=fake_kfp.url, namespace="team-a")
    with pytest.raises(submit_lib.SubmitError) as raised:
        submit_lib.submit(request)
    host = fake_kfp.url.removeprefix("http://")
    assert str(raised.value).startswith(
        f"KFP at {host} rejected the request (authentication error, HTTP 401 Unauthorized): "
        f"set ${submit_lib.TOKEN_ENV} to a valid token for {host}."
    )
    assert "cannot reach" not in str(raised.value)


def test_a_token_is_never_sent_over_http_without_the_flag(fake_kfp, spec_file, monkeypatch, capsys):
    monkeypatch.setenv(submit_lib.TOKEN_ENV, "secret-token")
    argv = ["submit", "--spec", spec_file, "--host", fake_kfp.url]
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    assert "refusing to send $KFP_AUTH_TOKEN over plain http to 127.0.0.1:" in err
    assert submit_lib.INSECURE_FLAG in err and "secret-token" not in err
    assert fake_kfp.requests == []  # nothing left the process
    assert (
        cli.main(["submit", "--spec", spec_file, "--host", "https://kfp.example", "--dry-run"]) == 0
    )
    capsys.readouterr()


def test_a_forbidden_response_echoing_the_token_is_reported_redacted(
    fake_kfp, spec_file, monkeypatch, capsys, caplog
):
    token = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJib2IifQ.c2lnbmF0dXJl"
    monkeypatch.setenv(submit_lib.TOKEN_ENV, token)
    argv = ["submit", "--spec", spec_file, "--host", fake_kfp.url, "--insecure-allow-http-token"]
    assert cli.main(argv) == 1
    captured = capsys.readouterr()
    assert token not in captured.err + captured.out
    headers = {k.lower(): v for k, v in fake_kfp.requests[0][2].items()}
    assert headers["authorization"] == f"Bearer {token}"  # the server echoed it back
    host = fake_kfp.url.removeprefix("http://")
    assert f"KFP at {host} rejected the request (authorization error, HTTP 403 Forbidden)" in (
        captured.err
    )
    assert "Bearer [REDACTED]" in captured.err and "Traceback" not in captured.err
    assert len(captured.err.splitlines()) == 1
    assert token not in caplog.text and "Traceback" not in caplog.text


def test_redact_removes_token_like_values() -> None:
    text = (
        'Authorization: Bearer abc.def {"access_token": "s3cr3t", "x": "eyJa.eyJb.c"} '
        "q?token=zz&a=1"
    )
    redacted = submit_lib.redact(text + " mine", "mine")
    for secret in ("abc.def", "s3cr3t", "eyJa.eyJb.c", "zz", "mine"):
        assert secret not in redacted
    assert '"x": "[REDACTED]"' in redacted and "a=1" in redacted


def test_bad_requests_give_clear_errors(spec_file, tmp_path, capsys):
    assert cli.main(["submit", "--spec", spec_file, "--host", "http://127.0.0.1:1"]) == 1
    assert "error: cannot reach KFP at 127.0.0.1:1: " in capsys.readouterr().err
    assert cli.main(["submit", "--spec", spec_file, "--host", "kfp.example.com"]) == 1
    assert "must be an http:// or https:// URL" in capsys.readouterr().err
    missing = str(tmp_path / "none.yaml")
    assert cli.main(["submit", "--spec", missing, "--host", "http://127.0.0.1:1"]) == 1
    assert f"pipeline spec {missing!r} does not exist" in capsys.readouterr().err
    host = ["--spec", spec_file, "--host", "http://h"]
    assert cli.main(["submit", *host, "--param", "data_root=/d"]) == 1
    assert "unknown pipeline parameters ['data_root']; the spec has ['source_uri']" in (
        capsys.readouterr().err
    )
    assert cli.main(["submit", *host, "--cron", "0 3 * * *"]) == 1
    assert "--cron needs 6 fields, seconds first" in capsys.readouterr().err
    assert cli.main(["submit", *host, "--pipeline-name", "taxi", "--no-cache"]) == 1
    assert "--no-cache cannot apply to an uploaded pipeline version" in capsys.readouterr().err


def test_a_spec_that_does_not_parse_strictly_is_not_sent(spec_file, tmp_path, capsys):
    with open(spec_file) as f:
        text = f.read()
    bad = tmp_path / "bad.yaml"
    bad.write_text(text.replace("  cachingOptions:\n", "  cachingOption:\n", 1))
    assert cli.main(["submit", "--spec", str(bad), "--host", "http://h", "--dry-run"]) == 1
    err = capsys.readouterr().err
    assert "is not a compiled pipeline spec" in err and "cachingOption" in err


def test_dry_run_prints_request_and_sends_nothing(fake_kfp, spec_file, capsys, monkeypatch):
    monkeypatch.setenv(submit_lib.TOKEN_ENV, "secret-token")
    argv = [
        "submit",
        "--spec",
        spec_file,
        "--host",
        fake_kfp.url,
        "--param",
        "source_uri=/d",
        "--pipeline-name",
        "taxi",
        "--cron",
        "0 0 3 * * *",
        "--dry-run",
        "--insecure-allow-http-token",
    ]
    assert cli.main(argv) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["parameters"] == {"source_uri": "/d"}
    assert printed["pipeline_root"] == "minio://mlpipeline/v2/artifacts"
    assert printed["schedule"] == {"cron": "0 0 3 * * *", "max_concurrency": 1}
    assert printed["upload"]["version"].startswith("chicago-taxi-")
    assert printed["auth_token"] == f"from ${submit_lib.TOKEN_ENV}"
    assert "secret-token" not in json.dumps(printed)
    assert fake_kfp.requests == []


class _Scripted(http.server.ThreadingHTTPServer):
    """Answers every request with one status, content type and body (`{auth}` = the
    request's Authorization value, `{auth_quoted}` = it URL-encoded); counts requests."""

    def __init__(self, status: int, content_type: str, body: str):
        super().__init__(("127.0.0.1", 0), _ScriptedHandler)
        self.status, self.content_type, self.template = status, content_type, body
        self.count = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _ScriptedHandler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def _answer(self) -> None:
        self.server.count += 1
        auth = self.headers.get("Authorization", "")
        body = self.server.template.format(
            auth=auth, auth_quoted=urllib.parse.quote(auth, safe="")
        ).encode()
        self.send_response(self.server.status)
        self.send_header("Content-Type", self.server.content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        self._answer()

    def do_POST(self):
        self._answer()


@pytest.fixture
def scripted():
    servers = []

    def start(status: int, content_type: str, body: str) -> _Scripted:
        server = _Scripted(status, content_type, body)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def _bounded_main(argv: list[str], seconds: float = 60) -> int:
    """cli.main in a thread, failing the test if it has not returned within `seconds`."""
    result: list[int] = []
    thread = threading.Thread(target=lambda: result.append(cli.main(argv)), daemon=True)
    thread.start()
    thread.join(seconds)
    assert result, f"`{' '.join(argv)}` still running after {seconds} s"
    return result[0]


def test_url_userinfo_never_leaves_in_dry_run_or_errors(spec_file, capsys, monkeypatch):
    monkeypatch.delenv(submit_lib.TOKEN_ENV, raising=False)
    password = "Pa55-w0rd"
    host = f"https://alice:{password}@kfp.example/pipeline"
    assert cli.main(["submit", "--spec", spec_file, "--host", host, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert json.loads(out)["host"] == "https://[REDACTED]@kfp.example/pipeline"
    assert password not in out and "alice" not in out
    # A refused connection: the error names the host without its userinfo.
    unreachable = f"http://alice:{password}@127.0.0.1:1"
    assert cli.main(["submit", "--spec", spec_file, "--host", unreachable]) == 1
    captured = capsys.readouterr()
    assert "cannot reach KFP at 127.0.0.1:1" in captured.err
    assert password not in captured.err + captured.out and "alice" not in captured.err
    assert cli.main(["submit", "--spec", spec_file, "--host", f"ftp://alice:{password}@h"]) == 1
    assert password not in capsys.readouterr().err


@pytest.mark.parametrize("status", [401, 403, 500])
def test_an_error_echoing_the_token_url_encoded_is_one_redacted_line(
    scripted, spec_file, capsys, caplog, monkeypatch, status
):
    token = "s3cr3t+tok/en=with&chars"
    monkeypatch.setenv(submit_lib.TOKEN_ENV, token)
    server = scripted(
        status,
        "application/json",
        '{{"error": "denied", "you_sent": "{auth_quoted}", "raw": "{auth}", '
        '"query": "?access_token={auth_quoted}"}}',
    )
    argv = ["submit", "--spec", spec_file, "--host", server.url, "--insecure-allow-http-token"]
    assert _bounded_main(argv) == 1
    captured = capsys.readouterr()
    shown = captured.out + captured.err + caplog.text
    for form in (
        token,
        urllib.parse.quote(token, safe=""),
        urllib.parse.quote_plus(token),
        urllib.parse.quote(f"Bearer {token}", safe=""),
    ):
        assert form not in shown
    assert "Traceback" not in shown and captured.out == ""
    [line] = captured.err.splitlines()
    assert f"HTTP {status}" in line and "[REDACTED]" in line
    # Answered at once: not kfp.Client's five health checks 5 s apart.
    assert server.count == 1


def test_an_html_page_is_not_taken_for_kfp(scripted, spec_file, capsys, monkeypatch):
    monkeypatch.delenv(submit_lib.TOKEN_ENV, raising=False)
    server = scripted(200, "text/html", "<html><body>Sign in</body></html>")
    assert _bounded_main(["submit", "--spec", spec_file, "--host", server.url]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""  # no `#/runs/details/None`
    [line] = captured.err.splitlines()
    assert "answered HTTP 200 with text/html, not KFP's API" in line


def test_a_json_answer_without_a_run_id_is_an_error(scripted, spec_file, capsys, monkeypatch):
    monkeypatch.delenv(submit_lib.TOKEN_ENV, raising=False)
    server = scripted(200, "application/json", "{{}}")
    argv = ["submit", "--spec", spec_file, "--host", server.url, "--namespace", "team-a"]
    assert _bounded_main(argv) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and "Traceback" not in captured.err
    assert "not KFP's API" in captured.err or "without a run id" in captured.err


def test_an_endpoint_that_never_answers_times_out(spec_file, capsys, monkeypatch):
    import socket

    monkeypatch.delenv(submit_lib.TOKEN_ENV, raising=False)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)  # Connections are accepted by the kernel, never answered.
        host = f"http://127.0.0.1:{listener.getsockname()[1]}"
        argv = ["submit", "--spec", spec_file, "--host", host, "--read-timeout", "0.5"]
        assert _bounded_main(argv, seconds=30) == 1
    [line] = capsys.readouterr().err.splitlines()
    assert "did not answer within 0.5 s (--read-timeout)" in line


def test_redact_covers_every_credential_form() -> None:
    token = "tok+en/1="
    text = (
        f"Authorization: Token abc123 and more\n"
        f"https://bob:pw%40x@h/p {urllib.parse.quote(token, safe='')} "
        f"{urllib.parse.quote_plus(token)} {token}"
    )
    redacted = submit_lib.redact(text, token)
    for secret in ("abc123", "bob", "pw%40x", token, urllib.parse.quote(token, safe="")):
        assert secret not in redacted
    assert "https://[REDACTED]@h/p" in redacted


class _SlowAfterHealthz(http.server.ThreadingHTTPServer):
    """Answers KFP's health check at once and every other call after `delay_s`."""

    def __init__(self, delay_s: float):
        super().__init__(("127.0.0.1", 0), _SlowHandler)
        self.delay_s = delay_s

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def handle_error(self, request, client_address):
        pass  # The client hung up after its timeout: expected here.


class _SlowHandler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        if urllib.parse.urlparse(self.path).path != f"{API}/healthz":
            threading.Event().wait(self.server.delay_s)
        body = b'{"multi_user": false}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def test_kfp_client_calls_time_out_too(spec_file, capsys, monkeypatch):
    # Pins the adapter that gives kfp.Client's REST client its timeouts (kfp_server_api's
    # private `rest_client.request`): the health check answers, the next call never does.
    monkeypatch.delenv(submit_lib.TOKEN_ENV, raising=False)
    server = _SlowAfterHealthz(delay_s=5)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        argv = ["submit", "--spec", spec_file, "--host", server.url, "--namespace", "team-a"]
        assert _bounded_main([*argv, "--read-timeout", "0.3"], seconds=30) == 1
    finally:
        server.shutdown()
        server.server_close()
    captured = capsys.readouterr()
    [line] = captured.err.splitlines()
    assert "KFP at 127.0.0.1:" in line and "did not answer within 0.3 s" in line, line
    assert captured.out == ""
