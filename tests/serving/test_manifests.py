"""The TF Serving Kubernetes manifests: rendered per overlay, validated offline, consistent."""

from __future__ import annotations

import copy
import functools
import json
import pathlib
import shutil
import subprocess
import warnings
from typing import Any

import kubernetes_validate
import pytest
import yaml

from serving import cli
from serving.settings import parse_model_config
from tests.serving.support import kustomize

# The one place naming the manifests' folder.
MANIFESTS = pathlib.Path(__file__).resolve().parents[2] / "kubeflow" / "tf-serving"
OVERLAYS = ["pvc", "gcs"]
K8S_VERSION = "1.30.0"
MIN_KUSTOMIZE = (4, 0)  # `labels` and `patches` as these kustomizations use them


@functools.cache
def kubectl() -> str | None:
    """kubectl on PATH when its built-in kustomize can render the overlays, else None."""
    path = shutil.which("kubectl")
    if path is None:
        return None
    out = subprocess.run(
        [path, "version", "--client", "-o", "json"], capture_output=True, text=True, timeout=60
    )
    try:
        version = json.loads(out.stdout).get("kustomizeVersion", "")
    except json.JSONDecodeError:
        return None
    numbers = tuple(int(p) for p in version.lstrip("v").split(".")[:2] if p.isdigit())
    return path if numbers >= MIN_KUSTOMIZE else None


def kubectl_kustomize(directory: pathlib.Path) -> list[dict[str, Any]]:
    kubectl_path = kubectl()
    assert kubectl_path is not None
    out = subprocess.run(
        [kubectl_path, "kustomize", str(directory)],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def render(overlay: str) -> list[dict[str, Any]]:
    """`kubectl kustomize` of an overlay; the test's own subset only where kubectl is missing."""
    directory = MANIFESTS / "overlays" / overlay
    if kubectl() is not None:
        return kubectl_kustomize(directory)
    warnings.warn(
        "no kubectl with kustomize >= 4: manifests rendered by tests/serving/support/kustomize.py",
        stacklevel=2,
    )
    return kustomize.render(directory)


@pytest.fixture(scope="module", params=OVERLAYS)
def rendered(request: pytest.FixtureRequest) -> tuple[str, dict[tuple[str, str], dict[str, Any]]]:
    docs = render(request.param)
    return request.param, {(d["kind"], d["metadata"]["name"]): d for d in docs}


def test_every_manifest_validates_against_kubernetes_schemas(rendered) -> None:  # type: ignore[no-untyped-def]
    _, docs = rendered
    assert {kind for kind, _ in docs} >= {
        "Deployment",
        "Service",
        "PodDisruptionBudget",
        "HorizontalPodAutoscaler",
        "ConfigMap",
        "NetworkPolicy",
    }
    for doc in docs.values():
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_schema_validation_catches_mistakes(rendered) -> None:  # type: ignore[no-untyped-def]
    _, docs = rendered
    broken = copy.deepcopy(docs[("Deployment", "tf-serving")])
    broken["spec"]["template"]["spec"]["containers"][0]["resources"]["limit"] = {"cpu": "1"}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)


def test_deployment_is_production_ready(rendered) -> None:  # type: ignore[no-untyped-def]
    overlay, docs = rendered
    deployment = docs[("Deployment", "tf-serving")]
    pod = deployment["spec"]["template"]["spec"]
    # TF Serving beside the request-log front (tests/serving/test_front_manifests.py).
    container = next(c for c in pod["containers"] if c["name"] == "tf-serving")
    assert container["image"] == "tensorflow/serving:2.16.1"
    assert pod["securityContext"]["runAsNonRoot"] and pod["securityContext"]["runAsUser"] != 0
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert {p["containerPort"] for p in container["ports"]} == {8510, 8511}
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert "privileged" not in container["securityContext"]
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert probe in container
    # Liveness is an RPC on TF Serving's grpc.health.v1 service (TF Serving 2.16 server.cc
    # registers "PredictionService" when --enable_grpc_healthcheck_service is set), not TCP.
    for probe in ("livenessProbe", "startupProbe"):
        assert container[probe]["grpc"] == {"port": 8510, "service": "PredictionService"}
    assert container["readinessProbe"]["httpGet"]["path"] == "/v1/models/chicago_taxi/metadata"
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(container["resources"][kind])
    # The model config comes from the ConfigMap mounted where the args say.
    args = dict(a.lstrip("-").split("=", 1) for a in container["args"])
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    config_volume = next(v for v in pod["volumes"] if v["name"] == "config")
    config_map = docs[("ConfigMap", config_volume["configMap"]["name"])]
    assert args["model_config_file"] == mounts["config"]["mountPath"] + "/models.config"
    assert args["monitoring_config_file"] == mounts["config"]["mountPath"] + "/monitoring.config"
    (model,) = parse_model_config(config_map["data"]["models.config"])
    assert model.name == "chicago_taxi"
    if overlay == "pvc":
        assert model.base_path.startswith(mounts["models"]["mountPath"] + "/")
        claim = next(v for v in pod["volumes"] if v["name"] == "models")["persistentVolumeClaim"]
        assert ("PersistentVolumeClaim", claim["claimName"]) in docs and mounts["models"][
            "readOnly"
        ]
    else:
        assert model.base_path.startswith("gs://") and "models" not in mounts
        assert ("ServiceAccount", pod["serviceAccountName"]) in docs
    # The same flags start this repository's server (`python -m serving`).
    parsed = cli._parser().parse_args(container["args"])
    assert parsed.enable_grpc_healthcheck_service
    assert parsed.port == 8510 and parsed.rest_api_port == 8511 and parsed.enable_model_warmup


def test_service_pdb_hpa_point_at_the_pods(rendered) -> None:  # type: ignore[no-untyped-def]
    _, docs = rendered
    deployment = docs[("Deployment", "tf-serving")]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    service = docs[("Service", "tf-serving")]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert {p["port"] for p in service["spec"]["ports"]} == {8500, 8501}
    pdb = docs[("PodDisruptionBudget", "tf-serving")]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    hpa = docs[("HorizontalPodAutoscaler", "tf-serving")]
    assert hpa["spec"]["scaleTargetRef"]["name"] == "tf-serving" and hpa["spec"]["minReplicas"] >= 2
    assert pdb["spec"]["minAvailable"] < hpa["spec"]["minReplicas"]
    namespaced = [d for (kind, _), d in docs.items() if kind != "Namespace"]
    assert len({d["metadata"].get("namespace") for d in namespaced}) == 1


def test_only_clients_and_the_scraper_reach_the_model_server(rendered) -> None:  # type: ignore[no-untyped-def]
    overlay, docs = rendered
    pod_labels = docs[("Deployment", "tf-serving")]["spec"]["template"]["metadata"]["labels"]
    policy = docs[("NetworkPolicy", "tf-serving")]["spec"]
    assert policy["podSelector"]["matchLabels"].items() <= pod_labels.items()
    assert policy["policyTypes"] == ["Ingress"]
    allowed = {}
    for rule in policy["ingress"]:
        (source,) = rule["from"]
        assert set(source) == {"namespaceSelector"}  # never "everyone" (an empty rule)
        key = tuple(sorted(source["namespaceSelector"]["matchLabels"].items()))
        allowed[key] = {p["port"] for p in rule["ports"]}
    assert allowed == {
        (("tfx-taxi.example.com/model-client", "true"),): {8500, 8501},
        (("kubernetes.io/metadata.name", "monitoring"),): {8501, 8502},
    }
    if overlay == "gcs":
        namespace = docs[("Namespace", "tf-serving")]["metadata"]["labels"]
        assert namespace["pod-security.kubernetes.io/enforce"] == "restricted"
        assert docs[("Deployment", "tf-serving")]["metadata"]["namespace"] == "tf-serving"


@pytest.mark.skipif(kubectl() is None, reason="no kubectl with kustomize >= 4 to compare with")
@pytest.mark.parametrize("overlay", [*OVERLAYS, "kserve"])
def test_fallback_renderer_agrees_with_kubectl(overlay: str) -> None:
    directory = MANIFESTS / "overlays" / overlay
    real = {(d["kind"], d["metadata"]["name"]): d for d in kubectl_kustomize(directory)}
    ours = {(d["kind"], d["metadata"]["name"]): d for d in kustomize.render(directory)}
    assert real == ours


# JSON field names of the InferenceService types, extracted from kserve/kserve at commit
# aaac4e294dae (2026-08-21), pkg/apis/serving/v1beta1/: inference_service.go
# (InferenceServiceSpec), predictor.go (PredictorSpec, PredictorExtensionSpec),
# predictor_model.go (ModelSpec, ModelFormat), component.go (ComponentExtensionSpec) and
# podspec.go (PodSpec, inlined in PredictorSpec); only the names this overlay may use.
KSERVE_FIELDS: dict[str, set[str]] = {
    "spec": {"predictor", "explainer", "transformer"},
    "spec.predictor": {
        # PredictorSpec
        "name",
        "tensorflow",
        "model",
        # ComponentExtensionSpec (inlined)
        "minReplicas",
        "maxReplicas",
        "scaleTarget",
        "scaleMetric",
        "containerConcurrency",
        "timeout",
        "canaryTrafficPercent",
        "logger",
        "batcher",
        "labels",
        "annotations",
        # PodSpec (inlined)
        "serviceAccountName",
        "securityContext",
        "volumes",
        "nodeSelector",
        "tolerations",
    },
    "spec.predictor.model": {
        # ModelSpec
        "modelFormat",
        "runtime",
        # PredictorExtensionSpec (inlined), and its inlined corev1.Container
        "storageUri",
        "runtimeVersion",
        "protocolVersion",
        "resources",
        "args",
        "env",
        "securityContext",
    },
    "spec.predictor.model.modelFormat": {"name", "version"},
    # LoggerSpec (inference_service.go, kserve/kserve at aaac4e294dae)
    "spec.predictor.logger": {"url", "mode"},
}
# protocolVersion values (pkg/constants: InferenceServiceProtocol) KServe's TF Serving runtime
# lists in config/runtimes/kserve-tensorflow-serving.yaml.
KSERVE_TF_PROTOCOLS = {"v1", "grpc-v1"}


def unknown_kserve_fields(isvc: dict[str, Any]) -> list[str]:
    """Dotted paths of the InferenceService's fields KServe's types do not have."""
    unknown = []
    for path, allowed in KSERVE_FIELDS.items():
        node = isvc
        for key in path.split("."):
            node = node.get(key, {})
        unknown += [f"{path}.{name}" for name in sorted(set(node) - allowed)]
    return unknown


def test_kserve_overlay_uses_only_kserve_fields_and_the_tf_serving_runtime() -> None:
    docs = {(d["kind"], d["metadata"]["name"]): d for d in render("kserve")}
    isvc = docs[("InferenceService", "chicago-taxi")]
    assert isvc["apiVersion"] == "serving.kserve.io/v1beta1"
    assert unknown_kserve_fields(isvc) == []
    misspelt = copy.deepcopy(isvc)
    misspelt["spec"]["predictor"]["canaryTrafficPercentage"] = 10
    misspelt["spec"]["predictor"]["model"]["storageURI"] = "gs://x"
    assert unknown_kserve_fields(misspelt) == [
        "spec.predictor.canaryTrafficPercentage",
        "spec.predictor.model.storageURI",
    ]
    predictor = isvc["spec"]["predictor"]
    model = predictor["model"]
    assert model["modelFormat"]["name"] == "tensorflow" and model["runtimeVersion"] == "2.16.1"
    assert model["protocolVersion"] in KSERVE_TF_PROTOCOLS
    assert 0 < predictor["canaryTrafficPercent"] < 100
    # The same model directory as the gcs overlay's TF Serving.
    (gcs_model,) = parse_model_config(
        {(d["kind"], d["metadata"]["name"]): d for d in render("gcs")}[
            ("ConfigMap", "tf-serving-config")
        ]["data"]["models.config"]
    )
    assert model["storageUri"] == gcs_model.base_path
    assert ("ServiceAccount", predictor["serviceAccountName"]) in docs
    kubernetes_validate.validate(docs[("ServiceAccount", "tf-serving")], K8S_VERSION, strict=True)
