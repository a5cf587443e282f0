"""The TF Serving Kubernetes manifests: rendered per overlay, validated offline, consistent."""

from __future__ import annotations

import copy
import os
import pathlib
import shutil
import subprocess
from typing import Any

import kubernetes_validate
import pytest
import yaml

from serving import cli
from serving.settings import parse_model_config

ROOT = pathlib.Path(__file__).resolve().parents[2] / "kubeflow" / "tf-serving"
OVERLAYS = ["pvc", "gcs"]
K8S_VERSION = "1.30.0"


def _pointer_parent(doc: Any, path: str) -> tuple[Any, str]:
    parts = [p.replace("~1", "/").replace("~0", "~") for p in path.lstrip("/").split("/")]
    node = doc
    for part in parts[:-1]:
        node = node[int(part)] if isinstance(node, list) else node[part]
    return node, parts[-1]


def _json6902(doc: dict[str, Any], ops: list[dict[str, Any]]) -> None:
    for op in ops:
        parent, key = _pointer_parent(doc, op["path"])
        if op["op"] in ("add", "replace"):
            if isinstance(parent, list):
                index = len(parent) if key == "-" else int(key)
                if op["op"] == "add":
                    parent.insert(index, op["value"])
                else:
                    parent[index] = op["value"]
            else:
                if op["op"] == "replace":
                    assert key in parent, f"replace of missing {op['path']}"
                parent[key] = op["value"]
        elif op["op"] == "remove":
            if isinstance(parent, list):
                parent.pop(int(key))
            else:
                del parent[key]
        else:
            raise NotImplementedError(op["op"])


def render(directory: pathlib.Path) -> list[dict[str, Any]]:
    """A small kustomize for the features these manifests use (kubectl is not installable here):
    resources, namespace, labels (with selectors), images, configMapGenerator (create/merge/
    replace, no hash) and JSON6902 patches. Unknown fields fail the test."""
    k = yaml.safe_load((directory / "kustomization.yaml").read_text())
    known = {
        "apiVersion",
        "kind",
        "resources",
        "namespace",
        "labels",
        "images",
        "configMapGenerator",
        "generatorOptions",
        "patches",
    }
    assert set(k) <= known, set(k) - known
    docs: list[dict[str, Any]] = []
    for resource in k.get("resources", []):
        path = (directory / resource).resolve()
        if path.is_dir():
            docs.extend(render(path))
        else:
            docs.extend(d for d in yaml.safe_load_all(path.read_text()) if d)
    for gen in k.get("configMapGenerator", []):
        for f in gen.get("files", []):
            assert (directory / f).resolve().is_relative_to(directory.resolve()), (
                f"{f} outside the kustomization root"
            )
        data = {os.path.basename(f): (directory / f).read_text() for f in gen.get("files", [])}
        behavior = gen.get("behavior", "create")
        existing = [
            d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == gen["name"]
        ]
        if behavior == "create":
            assert not existing
            assert k.get("generatorOptions", {}).get("disableNameSuffixHash"), (
                "hash suffixes not rendered"
            )
            docs.append(
                {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": {"name": gen["name"]},
                    "data": data,
                }
            )
        else:
            assert len(existing) == 1, f"{behavior} needs an existing ConfigMap {gen['name']}"
            existing[0]["data"] = data if behavior == "replace" else {**existing[0]["data"], **data}
    for patch in k.get("patches", []):
        t = patch["target"]
        targets = [d for d in docs if d["kind"] == t["kind"] and d["metadata"]["name"] == t["name"]]
        assert len(targets) == 1, t
        _json6902(targets[0], yaml.safe_load(patch["patch"]))
    for label in k.get("labels", []):
        for d in docs:
            d["metadata"].setdefault("labels", {}).update(label["pairs"])
            if not label.get("includeSelectors"):
                continue
            spec = d.get("spec", {})
            if d["kind"] in ("Deployment",):
                spec["selector"]["matchLabels"].update(label["pairs"])
                spec["template"]["metadata"].setdefault("labels", {}).update(label["pairs"])
            elif d["kind"] == "Service":
                spec["selector"].update(label["pairs"])
            elif d["kind"] == "PodDisruptionBudget":
                spec["selector"]["matchLabels"].update(label["pairs"])
    for image in k.get("images", []):
        for d in docs:
            for c in d.get("spec", {}).get("template", {}).get("spec", {}).get("containers", []):
                name = (
                    c["image"].split("@")[0].rsplit(":", 1)[0]
                    if ":" in c["image"].split("/")[-1]
                    else c["image"].split("@")[0]
                )
                if name == image["name"]:
                    new = image.get("newName", name)
                    c["image"] = (
                        f"{new}@{image['digest']}"
                        if "digest" in image
                        else f"{new}:{image['newTag']}"
                    )
    if "namespace" in k:
        for d in docs:
            d["metadata"]["namespace"] = k["namespace"]
    return copy.deepcopy(docs)


@pytest.fixture(scope="module", params=OVERLAYS)
def rendered(request: pytest.FixtureRequest) -> tuple[str, dict[tuple[str, str], dict[str, Any]]]:
    docs = render(ROOT / "overlays" / request.param)
    return request.param, {(d["kind"], d["metadata"]["name"]): d for d in docs}


def test_every_manifest_validates_against_kubernetes_schemas(rendered) -> None:  # type: ignore[no-untyped-def]
    _, docs = rendered
    assert {kind for kind, _ in docs} >= {
        "Deployment",
        "Service",
        "PodDisruptionBudget",
        "HorizontalPodAutoscaler",
        "ConfigMap",
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
    (container,) = pod["containers"]
    assert container["image"] == "tensorflow/serving:2.16.1"
    assert pod["securityContext"]["runAsNonRoot"] and pod["securityContext"]["runAsUser"] != 0
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert {p["containerPort"] for p in container["ports"]} == {8500, 8501}
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert probe in container
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
    assert parsed.port == 8500 and parsed.rest_api_port == 8501 and parsed.enable_model_warmup


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
    assert len({d["metadata"].get("namespace") for d in docs.values()}) == 1


@pytest.mark.skipif(
    shutil.which("kubectl") is None, reason="kubectl is not installed (no PyPI package ships it)"
)
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_kubectl_kustomize_agrees(overlay: str) -> None:
    out = subprocess.run(
        ["kubectl", "kustomize", str(ROOT / "overlays" / overlay)],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    real = {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(out) if d}
    ours = {(d["kind"], d["metadata"]["name"]): d for d in render(ROOT / "overlays" / overlay)}
    assert real == ours
