"""The request-log front and the KServe sink in the manifests: wired to TF Serving, the claim
and the monitor CronJob, with flags their own CLIs accept."""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import pytest

from commands import cli as pipeline_cli
from serving import cli as server_cli
from serving.front import cli as front_cli
from serving.kserve_sink import cli as sink_cli
from tests.serving.test_manifests import K8S_VERSION, render

CLAIM = "tfx-serving-request-logs"


def by_name(overlay: str) -> dict[tuple[str, str], dict[str, Any]]:
    return {(d["kind"], d["metadata"]["name"]): d for d in render(overlay)}


def containers(pod: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in pod["containers"]}


def claim_of(pod: dict[str, Any], container: dict[str, Any], path: str) -> str:
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == path]
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    return str(volume["persistentVolumeClaim"]["claimName"])


@pytest.mark.parametrize("overlay", ["pvc", "gcs"])
def test_clients_reach_the_front_which_forwards_to_tf_serving_in_the_pod(overlay: str) -> None:
    docs = by_name(overlay)
    pod = docs[("Deployment", "tf-serving")]["spec"]["template"]["spec"]
    named = containers(pod)
    tfs, front = named["tf-serving"], named["request-log-front"]
    assert front["command"] == ["python", "-m", "serving.front"]
    args = front_cli.parser().parse_args(front["args"])
    settings = front_cli.settings_from_args(args)
    backend = server_cli._parser().parse_args(tfs["args"])
    # The front listens where the Service sends clients, and forwards to TF Serving's ports.
    ports = {p["name"]: p["containerPort"] for p in front["ports"]}
    service = docs[("Service", "tf-serving")]["spec"]["ports"]
    assert {p["targetPort"] for p in service} <= set(ports)
    assert {ports[p["targetPort"]] for p in service} == {settings.grpc_port, settings.rest_port}
    assert settings.host == "0.0.0.0"
    assert settings.backend_grpc == f"127.0.0.1:{backend.port}"
    assert settings.backend_rest == f"http://127.0.0.1:{backend.rest_api_port}"
    assert {settings.grpc_port, settings.rest_port} & {backend.port, backend.rest_api_port} == set()
    # It logs at the default sampling into the shared claim, which exists in the overlay.
    log = settings.request_log
    assert log is not None and log.sampling_rate == 0.01
    assert claim_of(pod, front, log.directory) == CLAIM
    assert ("PersistentVolumeClaim", CLAIM) in docs
    assert front["securityContext"] == tfs["securityContext"]
    assert front["readinessProbe"]["httpGet"]["port"] == "http"
    for doc in docs.values():
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def monitor_claim(docs: dict[tuple[str, str], dict[str, Any]], overlay: str) -> str:
    """The claim the overlay's monitor CronJob reads (its --logs mount)."""
    job = docs[("CronJob", "tf-serving-monitor")]["spec"]["jobTemplate"]["spec"]["template"]
    (monitor,) = job["spec"]["containers"]
    args = pipeline_cli.build_parser().parse_args(["monitor", *monitor["args"]])
    if overlay != "pvc":  # the model comes from the object store the model server reads
        assert args.model_dir == "gs://tfx-taxi-serving/chicago_taxi"
        assert ("ServiceAccount", job["spec"]["serviceAccountName"]) in docs
    kubernetes_validate.validate(docs[("CronJob", "tf-serving-monitor")], K8S_VERSION, strict=True)
    return claim_of(job["spec"], monitor, args.logs)


@pytest.mark.parametrize("overlay", ["pvc", "gcs"])
def test_the_monitor_reads_what_the_front_writes(overlay: str) -> None:
    docs = by_name(overlay)
    deployment = docs[("Deployment", "tf-serving")]["spec"]["template"]["spec"]
    front = containers(deployment)["request-log-front"]
    log_dir = front_cli.settings_from_args(front_cli.parser().parse_args(front["args"]))
    assert log_dir.request_log is not None
    assert monitor_claim(docs, overlay) == CLAIM
    assert claim_of(deployment, front, log_dir.request_log.directory) == CLAIM
    # Nothing in the manifests runs this project's model server as the request logger.
    for doc in docs.values():
        for c in doc.get("spec", {}).get("template", {}).get("spec", {}).get("containers", []):
            assert c.get("command", [])[:3] != ["python", "-m", "serving"]


def test_kserve_logger_sends_to_the_sink_which_writes_the_claim() -> None:
    docs = by_name("kserve")
    predictor = docs[("InferenceService", "chicago-taxi")]["spec"]["predictor"]
    assert predictor["logger"]["mode"] == "all"
    url = predictor["logger"]["url"]
    sink = docs[("Deployment", "tf-serving-request-log-sink")]
    service = docs[("Service", "tf-serving-request-log-sink")]
    namespace = sink["metadata"]["namespace"]
    assert url == f"http://{service['metadata']['name']}.{namespace}.svc.cluster.local"
    pod = sink["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["command"] == ["python", "-m", "serving.kserve_sink"]
    args = sink_cli.parser().parse_args(container["args"])
    (port,) = service["spec"]["ports"]
    assert port["port"] == 80
    assert {p["name"]: p["containerPort"] for p in container["ports"]}[port["targetPort"]] == (
        args.port
    )
    assert service["spec"]["selector"].items() <= pod_labels(sink).items()
    assert claim_of(pod, container, args.request_log_dir) == CLAIM
    assert ("PersistentVolumeClaim", CLAIM) in docs
    assert monitor_claim(docs, "kserve") == CLAIM
    for name in ("tf-serving-request-log-sink",):
        kubernetes_validate.validate(docs[("Deployment", name)], K8S_VERSION, strict=True)
        kubernetes_validate.validate(docs[("Service", name)], K8S_VERSION, strict=True)
    kubernetes_validate.validate(docs[("PersistentVolumeClaim", CLAIM)], K8S_VERSION, strict=True)


def pod_labels(deployment: dict[str, Any]) -> dict[str, str]:
    return dict(deployment["spec"]["template"]["metadata"]["labels"])
