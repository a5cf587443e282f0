"""Submits a compiled spec to a KFP v2 API server with kfp.Client (token from the environment)."""

import dataclasses
import json
import os
from collections.abc import Mapping
from typing import Any

from pipeline.kubeflow_v2 import spec as spec_lib

TOKEN_ENV = "KFP_AUTH_TOKEN"


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
      run_name: Run display name.
      parameters: Pipeline parameter values (e.g. `{"data_root": "/mnt/taxi/data/v2"}`).
      enable_caching: Overrides the compiled caching choice when not None.
    """

    spec_path: str
    host: str
    namespace: str = ""
    experiment: str = "chicago-taxi"
    run_name: str = ""
    parameters: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    enable_caching: bool | None = None


def check_request(request: SubmitRequest) -> spec_lib.PipelineDocs:
    """Validates a request before anything is sent.

    Returns:
      The parsed spec.

    Raises:
      SubmitError: On a missing/invalid spec file, a bad host, or an unknown parameter.
    """
    if not request.host.startswith(("http://", "https://")):
        raise SubmitError(f"--host must be an http:// or https:// URL, got {request.host!r}")
    if not os.path.isfile(request.spec_path):
        raise SubmitError(
            f"pipeline spec {request.spec_path!r} does not exist: run `make compile` first"
        )
    try:
        with open(request.spec_path) as f:
            docs = spec_lib.parse(f.read())
    except ValueError as e:
        raise SubmitError(f"{request.spec_path!r} is not a compiled pipeline spec: {e}") from e
    known = docs.pipeline_spec["root"].get("inputDefinitions", {}).get("parameters", {})
    unknown = sorted(set(request.parameters) - set(known))
    if unknown:
        raise SubmitError(f"unknown pipeline parameters {unknown}; the spec has {sorted(known)}")
    return docs


def describe(request: SubmitRequest, docs: spec_lib.PipelineDocs) -> str:
    """Returns what a submission would send, as JSON text (the token is never shown)."""
    return json.dumps(
        {
            "host": request.host,
            "namespace": request.namespace or None,
            "experiment": request.experiment,
            "run_name": request.run_name or docs.pipeline_spec["pipelineInfo"]["name"],
            "pipeline": docs.pipeline_spec["pipelineInfo"].get("displayName"),
            "spec": request.spec_path,
            "parameters": dict(request.parameters),
            "enable_caching": request.enable_caching,
            "auth_token": f"from ${TOKEN_ENV}" if os.environ.get(TOKEN_ENV) else None,
        },
        indent=2,
        sort_keys=True,
    )


def submit(request: SubmitRequest) -> str:
    """Creates (or reuses) the experiment and starts a run of the spec.

    Args:
      request: What to send. The bearer token, if any, comes from $KFP_AUTH_TOKEN.

    Returns:
      The run's URL in the KFP UI.

    Raises:
      SubmitError: On a bad request or when the server cannot be reached or refuses it.
    """
    docs = check_request(request)
    import kfp
    import urllib3
    from kfp_server_api.exceptions import ApiException

    token = os.environ.get(TOKEN_ENV) or None
    try:
        client = kfp.Client(
            host=request.host, namespace=request.namespace or "kubeflow", existing_token=token
        )
        result = client.create_run_from_pipeline_package(
            request.spec_path,
            arguments=dict(request.parameters),
            run_name=request.run_name or docs.pipeline_spec["pipelineInfo"]["name"],
            experiment_name=request.experiment,
            namespace=request.namespace or None,
            enable_caching=request.enable_caching,
        )
    except ApiException as e:
        raise SubmitError(
            f"KFP at {request.host} refused the request: HTTP {e.status} {e.reason}: {e.body}"
        ) from e
    except (urllib3.exceptions.HTTPError, OSError) as e:
        raise SubmitError(f"cannot reach KFP at {request.host}: {e}") from e
    return f"{client._get_url_prefix()}/#/runs/details/{result.run_id}"
