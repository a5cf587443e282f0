"""Submits a compiled spec to a KFP v2 API server with kfp.Client (token from the environment).

One run, or a recurring run (cron), either from the spec file itself or from a new version of
a named pipeline uploaded first. The run's `pipeline_root` is always sent: KFP's backend never
reads the spec's `defaultPipelineRoot` (`backend/src/v2/driver/root_dag.go` takes the run's
root or the `kfp-launcher` ConfigMap's).
"""

import contextlib
import dataclasses
import hashlib
import io
import json
import logging
import os
import re
import urllib.parse
from collections.abc import Iterator, Mapping
from typing import Any

from runners.kubeflow import kfp_client
from runners.kubeflow import spec as spec_lib

TOKEN_ENV = "KFP_AUTH_TOKEN"
# KFP's scheduler parses cron with seconds first (robfig/cron, 6 fields), e.g. `0 0 3 * * *`.
CRON_FIELDS = 6
INSECURE_FLAG = "--insecure-allow-http-token"
HEALTHZ_PATH = "/apis/v2beta1/healthz"
REDACTED = "[REDACTED]"
# What a KFP error body may echo of a credential: bearer/basic values, JWTs (three base64url
# parts, the first starting `eyJ`: `{"`), and JSON or query fields named like a secret.
_SECRET_PATTERNS = (
    re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=%-]+"),
    re.compile(r"\beyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"),
    # Any Authorization value, whatever its scheme: up to the end of the line or field.
    re.compile(r"(?i)(\bauthorization[\"']?\s*[:=]\s*[\"']?)[^\"'\r\n,}]+"),
    re.compile(
        r"(?i)([\"']?(?:access_token|id_token|refresh_token|token|password|secret)"
        r"[\"']?\s*[:=]\s*[\"']?)[^\"'&,\s}]+"
    ),
    # URL userinfo (`scheme://user:password@host`): the whole userinfo goes.
    re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@?#]+@"),
)


class SubmitError(RuntimeError):
    """The run could not be submitted; the message says why (no traceback needed)."""


@dataclasses.dataclass(frozen=True)
class SubmitRequest:
    """What `submit` sends.

    Attributes:
      spec_path: Compiled spec (`.yaml`).
      host: KFP API endpoint, e.g. `https://kfp.example.com/pipeline` or `http://127.0.0.1:8888`.
      namespace: Kubernetes namespace of the run (multi-user KFP); empty = the client's default.
      experiment: Experiment name (created when missing).
      run_name: Run (or recurring run) display name; empty = the pipeline name.
      parameters: Pipeline parameter values (e.g. `{"source_uri": "/mnt/taxi/data/2024-06"}`).
      disable_caching: Run every step, whatever the compiled caching options say.
      pipeline_root: Artifact root of the run; empty = the spec's `defaultPipelineRoot` (the
        config's `pipeline_root`).
      pipeline_name: When set, upload the spec as a new version of this pipeline (created on
        first upload) and run that version.
      version_name: Name of the uploaded version; empty = `<spec name>-<spec hash>`.
      cron: When set, create a recurring run on this schedule (6 fields, seconds first)
        instead of one run.
      max_concurrency: Scheduled runs allowed at once (recurring runs).
      allow_http_token: Send $KFP_AUTH_TOKEN over plain `http://` (readable by anyone on
        the path); without it such a request is refused.
      connect_timeout_s: Seconds to open a connection to the API server.
      read_timeout_s: Seconds to wait for each response.
    """

    spec_path: str
    host: str
    namespace: str = ""
    experiment: str = "chicago-taxi"
    run_name: str = ""
    parameters: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    disable_caching: bool = False
    pipeline_root: str = ""
    pipeline_name: str = ""
    version_name: str = ""
    cron: str = ""
    max_concurrency: int = 1
    allow_http_token: bool = False
    connect_timeout_s: float = 10.0
    read_timeout_s: float = 60.0


@dataclasses.dataclass(frozen=True)
class Submitted:
    """What the server created.

    Attributes:
      url: The run's (or recurring run's) page in the KFP UI.
      pipeline_id: The pipeline uploaded to, if any.
      version_id: The pipeline version run, if one was uploaded.
    """

    url: str
    pipeline_id: str | None = None
    version_id: str | None = None


def check_request(request: SubmitRequest) -> spec_lib.PipelineDocs:
    """Validates a request before anything is sent.

    Returns:
      The parsed spec.

    Raises:
      SubmitError: On a missing/invalid spec file, a bad host, an unknown parameter, a
        malformed schedule, or caching disabled for an uploaded version.
    """
    if not request.host.startswith(("http://", "https://")):
        raise SubmitError(
            f"--host must be an http:// or https:// URL, got {redact_url(request.host)!r}"
        )
    if request.connect_timeout_s <= 0 or request.read_timeout_s <= 0:
        raise SubmitError(
            f"timeouts must be > 0 s, got connect {request.connect_timeout_s}, "
            f"read {request.read_timeout_s}"
        )
    if (
        request.host.startswith("http://")
        and os.environ.get(TOKEN_ENV)
        and not request.allow_http_token
    ):
        raise SubmitError(
            f"refusing to send ${TOKEN_ENV} over plain http to {_host_of(request.host)}: "
            f"anyone on the path can read it. Use an https:// host, or pass {INSECURE_FLAG} "
            "for a trusted link (e.g. `kubectl port-forward` to 127.0.0.1)."
        )
    if not os.path.isfile(request.spec_path):
        raise SubmitError(
            f"pipeline spec {request.spec_path!r} does not exist: run `make compile` first"
        )
    try:
        with open(request.spec_path) as f:
            docs = spec_lib.parse(f.read())
        spec_lib.check_strictly(docs)
    except ValueError as e:
        raise SubmitError(f"{request.spec_path!r} is not a compiled pipeline spec: {e}") from e
    known = docs.pipeline_spec["root"].get("inputDefinitions", {}).get("parameters", {})
    unknown = sorted(set(request.parameters) - set(known))
    if unknown:
        raise SubmitError(f"unknown pipeline parameters {unknown}; the spec has {sorted(known)}")
    if request.cron and len(request.cron.split()) != CRON_FIELDS:
        raise SubmitError(
            f"--cron needs {CRON_FIELDS} fields, seconds first (KFP's scheduler), e.g. "
            f"'0 0 3 * * *' for 03:00 daily; got {request.cron!r}"
        )
    if request.max_concurrency < 1:
        raise SubmitError(f"--max-concurrency must be >= 1, got {request.max_concurrency}")
    if request.disable_caching and request.pipeline_name:
        # kfp.Client rewrites cachingOptions only in a spec it sends itself; a run of an
        # uploaded version keeps the compiled options.
        raise SubmitError(
            "--no-cache cannot apply to an uploaded pipeline version: compile with "
            "enable_cache=false for that, or submit the spec file without --pipeline-name"
        )
    return docs


def _host_of(url: str) -> str:
    """`host[:port]` of a URL, without its userinfo."""
    return url.split("://", 1)[-1].split("/", 1)[0].rpartition("@")[2]


def redact_url(url: str) -> str:
    """The URL with its userinfo (`user:password@`), if any, replaced by `[REDACTED]`."""
    return _SECRET_PATTERNS[4].sub(lambda m: f"{m.group(1)}{REDACTED}@", url)


def secrets_of(host: str, token: str | None) -> list[str]:
    """The literal secrets a submission holds: the token and the host's userinfo, raw and
    URL-encoded (a server or proxy may echo them either way)."""
    userinfo = urllib.parse.urlsplit(host).netloc.rpartition("@")[0] if "@" in host else ""
    _, _, password = userinfo.partition(":")
    found = set()
    for secret in (token, userinfo, password):
        if secret:
            decoded = urllib.parse.unquote(secret)
            for form in (secret, decoded):
                found |= {form, urllib.parse.quote(form, safe=""), urllib.parse.quote_plus(form)}
    # Longest first: a secret's encoding may contain the secret.
    return sorted((s for s in found if len(s) >= 3), key=len, reverse=True)


def redact(text: str, token: str | None, *secrets: str) -> str:
    """Returns `text` with the token, the given secrets (each also URL-encoded) and anything
    credential-like (Authorization values, JWTs, URL userinfo) replaced by `[REDACTED]`."""
    literal = set(secrets)
    for secret in (token, *secrets):
        if secret:
            literal |= {
                secret,
                urllib.parse.quote(secret, safe=""),
                urllib.parse.quote_plus(secret),
            }
    for secret in sorted((s for s in literal if s), key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    text = _SECRET_PATTERNS[0].sub(lambda m: f"{m.group(1)} {REDACTED}", text)
    text = _SECRET_PATTERNS[1].sub(REDACTED, text)
    text = _SECRET_PATTERNS[2].sub(lambda m: f"{m.group(1)}{REDACTED}", text)
    text = _SECRET_PATTERNS[3].sub(lambda m: f"{m.group(1)}{REDACTED}", text)
    return redact_url(text)


def _one_line(text: str, limit: int = 300) -> str:
    """`text` on one line, at most `limit` characters (an error body may be a whole page)."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


@dataclasses.dataclass(frozen=True)
class _Answer:
    """An HTTP error answer, with the fields of kfp_server_api's ApiException that are read."""

    status: int
    reason: str | None
    body: bytes | str | None


def _api_error(request: SubmitRequest, error: Any, token: str | None) -> SubmitError:
    """A SubmitError for kfp's ApiException: status, reason and a redacted, bounded body."""
    body = error.body.decode(errors="replace") if isinstance(error.body, bytes) else error.body
    secrets = secrets_of(request.host, token)
    detail = _one_line(redact(str(body or "")[:2000], token, *secrets))
    reason = redact(str(error.reason or ""), token, *secrets)
    host = _host_of(request.host)
    if error.status in (401, 403):
        what = "authentication" if error.status == 401 else "authorization"
        hint = (
            f"set ${TOKEN_ENV} to a valid token for {host}"
            if error.status == 401 or not token
            else f"the token's identity may not use namespace {request.namespace or 'kubeflow'!r}"
        )
        return SubmitError(
            f"KFP at {host} rejected the request ({what} error, HTTP {error.status} {reason}): "
            f"{hint}. Response: {detail}"
        )
    return SubmitError(f"KFP at {host} refused the request: HTTP {error.status} {reason}: {detail}")


class _RedactingFilter(logging.Filter):
    """Redacts records logged while submitting; keeps kfp's last ApiException, unlogged.

    kfp.Client's health check (`kfp/client/client.py`, `get_kfp_healthz`) retries an
    ApiException 5 times, logging each with `logging.exception` (a traceback and the response
    body, which may echo the token), then raises TimeoutError: the filter drops those records
    and keeps the exception, so the one-line error reports a 401/403 as such, not as "cannot
    reach". Other records are kept, redacted, without their traceback.
    """

    def __init__(self, token: str | None, secrets: list[str]) -> None:
        super().__init__()
        self.token = token
        self.secrets = secrets
        self.api_error: Any = None

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if getattr(error, "status", None) is not None:
            self.api_error = error
            return False
        record.msg, record.args = redact(record.getMessage(), self.token, *self.secrets), ()
        record.exc_info = record.exc_text = None
        return True


@contextlib.contextmanager
def _redacted_logs(token: str | None, secrets: list[str]) -> Iterator[_RedactingFilter]:
    """Redacts what the root and kfp loggers record inside the block."""
    redacting = _RedactingFilter(token, secrets)
    loggers = [logging.getLogger(), logging.getLogger("kfp")]
    for logger in loggers:
        logger.addFilter(redacting)
    # urllib3 warns once per retried request, with the URL: the one-line error says it all.
    # Its connection-pool logger is set too: a library may have given it a level of its own,
    # which would win over its parent's.
    pool_loggers = [logging.getLogger("urllib3"), logging.getLogger("urllib3.connectionpool")]
    pool_levels = [logger.level for logger in pool_loggers]
    for logger in pool_loggers:
        logger.setLevel(logging.ERROR)
    try:
        yield redacting
    finally:
        for logger, level in zip(pool_loggers, pool_levels, strict=True):
            logger.setLevel(level)
        for logger in loggers:
            logger.removeFilter(redacting)


def _pipeline_root(request: SubmitRequest, docs: spec_lib.PipelineDocs) -> str | None:
    return request.pipeline_root or docs.pipeline_spec.get("defaultPipelineRoot") or None


def _version_name(request: SubmitRequest, docs: spec_lib.PipelineDocs) -> str:
    if request.version_name:
        return request.version_name
    with open(request.spec_path, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()[:12]
    return f"{docs.pipeline_spec['pipelineInfo']['name']}-{digest}"


def describe(request: SubmitRequest, docs: spec_lib.PipelineDocs) -> str:
    """Returns what a submission would send, as JSON text (the token is never shown)."""
    return json.dumps(
        {
            "host": redact_url(request.host),
            "namespace": request.namespace or None,
            "experiment": request.experiment,
            "run_name": request.run_name or docs.pipeline_spec["pipelineInfo"]["name"],
            "pipeline": docs.pipeline_spec["pipelineInfo"].get("displayName"),
            "spec": request.spec_path,
            "parameters": dict(request.parameters),
            "pipeline_root": _pipeline_root(request, docs),
            "caching": "off for every step" if request.disable_caching else "as compiled",
            "upload": (
                {"pipeline": request.pipeline_name, "version": _version_name(request, docs)}
                if request.pipeline_name
                else None
            ),
            "schedule": (
                {"cron": request.cron, "max_concurrency": request.max_concurrency}
                if request.cron
                else None
            ),
            "auth_token": f"from ${TOKEN_ENV}" if os.environ.get(TOKEN_ENV) else None,
        },
        indent=2,
        sort_keys=True,
    )


def _upload(client: Any, request: SubmitRequest, docs: spec_lib.PipelineDocs) -> tuple[str, str]:
    """Uploads the spec as a new version of `request.pipeline_name`; returns (pipeline, version)."""
    description = docs.pipeline_spec["pipelineInfo"].get("description")
    found = client.list_pipelines(
        filter=json.dumps(
            {
                "predicates": [
                    {
                        "operation": "EQUALS",
                        "key": "display_name",
                        "stringValue": request.pipeline_name,
                    }
                ]
            }
        ),
        namespace=request.namespace or None,
    ).pipelines
    if found:
        version = client.upload_pipeline_version(
            request.spec_path,
            _version_name(request, docs),
            pipeline_id=found[0].pipeline_id,
            description=description,
        )
        return version.pipeline_id, version.pipeline_version_id
    # The first upload creates the pipeline and its first version together.
    pipeline = client.upload_pipeline(
        request.spec_path,
        pipeline_name=request.pipeline_name,
        description=description,
        namespace=request.namespace or None,
    )
    versions = client.list_pipeline_versions(
        pipeline.pipeline_id, sort_by="created_at desc", page_size=1
    ).pipeline_versions
    if not versions:
        raise SubmitError(f"KFP created pipeline {pipeline.pipeline_id} but lists no version")
    return pipeline.pipeline_id, versions[0].pipeline_version_id


def submit(request: SubmitRequest) -> Submitted:
    """Starts a run (or a recurring run) of the spec, uploading it first when asked.

    Args:
      request: What to send. The bearer token, if any, comes from $KFP_AUTH_TOKEN.

    Returns:
      What was created, with the UI address.

    Raises:
      SubmitError: On a bad request or when the server cannot be reached or refuses it.
    """
    docs = check_request(request)
    token = os.environ.get(TOKEN_ENV) or None
    secrets = secrets_of(request.host, token)
    # kfp.Client prints "Experiment details: <url>" and "Run details: <url>" (with the host's
    # userinfo, and `None` ids on a bad answer): the one URL worth showing is returned instead.
    with _redacted_logs(token, secrets) as redacting, contextlib.redirect_stdout(io.StringIO()):
        try:
            return _send(request, docs, token, redacting)
        except SubmitError as e:
            # Every message leaves redacted, whichever path built it.
            raise SubmitError(redact(str(e), token, *secrets)) from None


def _probe(request: SubmitRequest, token: str | None) -> None:
    """Asks KFP's health endpoint once, with the timeouts, before kfp.Client does.

    kfp.Client's own check retries any error 5 times, 5 s apart, with no timeout, and accepts
    any 200 (an HTML page included). Redirects are not followed: the token must not travel to
    another host, and a redirect usually means a login page in front of the API.

    Raises:
      SubmitError: If the server cannot be reached in time, refuses the token, or does not
        answer as KFP's API.
    """
    import certifi
    import urllib3

    url = request.host.rstrip("/") + HEALTHZ_PATH
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    pool = urllib3.PoolManager(
        timeout=urllib3.Timeout(connect=request.connect_timeout_s, read=request.read_timeout_s),
        retries=False,
        ca_certs=certifi.where(),
    )
    host = _host_of(request.host)
    try:
        response = pool.request("GET", url, headers=headers, redirect=False)
    except urllib3.exceptions.NewConnectionError as e:
        # Before ConnectTimeoutError, its base class: refused or unresolvable, not slow.
        reason = str(e).split(": ", 1)[-1]
        raise SubmitError(f"cannot reach KFP at {host}: {_one_line(reason)}") from None
    except urllib3.exceptions.ConnectTimeoutError:
        raise SubmitError(
            f"cannot reach KFP at {host}: no connection within {request.connect_timeout_s:g} s"
        ) from None
    except urllib3.exceptions.ReadTimeoutError:
        raise SubmitError(
            f"KFP at {host} did not answer within {request.read_timeout_s:g} s (--read-timeout)"
        ) from None
    except (urllib3.exceptions.HTTPError, OSError) as e:
        raise SubmitError(f"cannot reach KFP at {host}: {_one_line(str(e))}") from None
    finally:
        pool.clear()
    kind = response.headers.get("Content-Type", "?").split(";")[0]
    if 300 <= response.status < 400:
        target = redact_url(response.headers.get("Location", "?"))
        raise SubmitError(
            f"{redact_url(url)} redirected (HTTP {response.status}) to {target}, not KFP's API "
            f"answering: a login page in front of it? Give the API's URL and ${TOKEN_ENV}"
        )
    if response.status in (401, 403) or response.status >= 500:
        # The same words as kfp's ApiException for these (kfp.Client would retry them 5 times).
        raise _api_error(
            request,
            _Answer(response.status, response.reason, response.data),
            token,
        )
    try:
        answer = json.loads(response.data)
    except ValueError:
        answer = None
    if response.status != 200 or not isinstance(answer, dict):
        raise SubmitError(
            f"{redact_url(url)} answered HTTP {response.status} with {kind}, not KFP's API "
            "(a JSON health report): is --host the KFP API endpoint, e.g. "
            "https://<host>/pipeline or a port-forward to ml-pipeline-ui?"
        )


def _with_timeouts(client: Any, connect_s: float, read_s: float) -> None:
    """Makes every call of `client` use these timeouts (kfp.Client sets none).

    kfp.Client's APIs share one `kfp_server_api.ApiClient`; its REST client takes a
    `_request_timeout` per call (`kfp_server_api/rest.py`, `RESTClientObject.request`), which
    kfp.Client never passes: the default is filled in here.
    """
    rest = client._run_api.api_client.rest_client
    original = rest.request

    def request(*args: Any, _request_timeout: Any = None, **kwargs: Any) -> Any:
        return original(*args, _request_timeout=_request_timeout or (connect_s, read_s), **kwargs)

    rest.request = request


def _send(
    request: SubmitRequest, docs: spec_lib.PipelineDocs, token: str | None, redacting: Any
) -> Submitted:
    """`submit`'s calls to kfp.Client, with errors mapped to a redacted SubmitError."""
    import kfp
    import urllib3
    from kfp_server_api.exceptions import ApiException

    name = request.run_name or docs.pipeline_spec["pipelineInfo"]["name"]
    source: dict[str, Any] = {"pipeline_package_path": request.spec_path}
    pipeline_id = version_id = None
    _probe(request, token)
    try:
        client = kfp.Client(
            host=request.host, namespace=request.namespace or "kubeflow", existing_token=token
        )
        _with_timeouts(client, request.connect_timeout_s, request.read_timeout_s)
        experiment = client.create_experiment(
            name=request.experiment, namespace=request.namespace or None
        )
        if request.pipeline_name:
            pipeline_id, version_id = _upload(client, request, docs)
            source = {"pipeline_id": pipeline_id, "version_id": version_id}
        common = {
            "experiment_id": experiment.experiment_id,
            "job_name": name,
            "params": dict(request.parameters),
            "pipeline_root": _pipeline_root(request, docs),
            # Only ever False: True would switch caching on for the always-run steps too.
            "enable_caching": False if request.disable_caching else None,
            **source,
        }
        if request.cron:
            recurring = client.create_recurring_run(
                cron_expression=request.cron,
                max_concurrency=request.max_concurrency,
                # A paused schedule resumes with the latest interval, not a backlog of runs.
                no_catchup=True,
                **common,
            )
            created = recurring.recurring_run_id
            path = f"#/recurringrun/details/{created}"
        else:
            run = client.run_pipeline(**common)
            created = run.run_id
            path = f"#/runs/details/{created}"
    except ApiException as e:
        # `from None`: kfp's exception (and a traceback of it) carries the raw response, which
        # may echo the token; only the redacted message leaves this boundary.
        raise _api_error(request, e, token) from None
    except (urllib3.exceptions.ReadTimeoutError, urllib3.exceptions.MaxRetryError) as e:
        # kfp_server_api's pool retries a timed-out read 3 times, then raises MaxRetryError.
        reason = getattr(e, "reason", e)
        if not isinstance(reason, urllib3.exceptions.ReadTimeoutError):
            raise SubmitError(
                f"cannot reach KFP at {_host_of(request.host)}: "
                f"{_one_line(redact(str(reason), token, *secrets_of(request.host, token)))}"
            ) from None
        raise SubmitError(
            f"KFP at {_host_of(request.host)} did not answer within "
            f"{request.read_timeout_s:g} s (--read-timeout)"
        ) from None
    except (urllib3.exceptions.HTTPError, OSError) as e:
        if isinstance(e, TimeoutError) and redacting.api_error is not None:
            # kfp's health check swallowed the server's answer (e.g. 401/403): report it.
            raise _api_error(request, redacting.api_error, token) from None
        message = _one_line(redact(str(e), token, *secrets_of(request.host, token)))
        raise SubmitError(f"cannot reach KFP at {redact_url(request.host)}: {message}") from None
    except (ValueError, TypeError, AttributeError) as e:
        # kfp_server_api could not deserialize the answer: not KFP's API.
        raise SubmitError(
            f"KFP at {_host_of(request.host)} answered something that is not KFP's API "
            f"({type(e).__name__}): is --host the KFP API endpoint?"
        ) from None
    if not created:
        raise SubmitError(
            f"KFP at {_host_of(request.host)} answered without a run id: is --host the KFP API "
            "endpoint (e.g. https://<host>/pipeline)?"
        )
    return Submitted(redact_url(kfp_client.ui_url(client, path)), pipeline_id, version_id)
