"""Fallback for `kubectl kustomize` where no kubectl with kustomize >= 4 is installed.

Debian's `kubernetes-client` package ships kubectl 1.20 (kustomize v2.0.3), which cannot read
these overlays (`labels`, `patches`); no official PyPI package ships kubectl or kustomize. So a
fresh CI machine may have none: the manifest tests then render with this subset, which
`test_manifests.test_fallback_renderer_agrees_with_kubectl` keeps equal to kubectl's output
wherever kubectl is installed.
"""

from __future__ import annotations

import copy
import os
import pathlib
from typing import Any

import yaml


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
    """Renders a kustomization with the features these manifests use.

    resources, namespace, labels (with selectors), images, configMapGenerator (create/merge/
    replace, no hash) and JSON6902 patches; unknown fields fail.
    """
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
            elif d["kind"] == "NetworkPolicy":
                # kustomize also labels ingress/egress podSelectors; ours use none.
                spec["podSelector"].setdefault("matchLabels", {}).update(label["pairs"])
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
            if d["kind"] != "Namespace":  # cluster-scoped
                d["metadata"]["namespace"] = k["namespace"]
    return copy.deepcopy(docs)
