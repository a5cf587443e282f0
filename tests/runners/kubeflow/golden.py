"""Golden-file helpers for the compiled spec: fixed markers for volatile fields, a two-way diff."""

import copy
import json
from typing import Any

from runners.kubeflow import spec as spec_lib


def normalise(docs: spec_lib.PipelineDocs) -> spec_lib.PipelineDocs:
    """Returns a copy with volatile fields (SDK version, images) replaced by fixed markers."""
    spec = copy.deepcopy(docs.pipeline_spec)
    spec["sdkVersion"] = "<sdk-version>"
    for _, executor in spec_lib.iter_executors(spec):
        if "container" in executor:
            executor["container"]["image"] = "<image>"
    # TFDV's StatsOptions JSON lists its unset (null) options, and which exist depends on the TFDV
    # release (1.21 dropped `_slice_sqls`): an absent option and a null one load the same.
    for task in spec.get("root", {}).get("dag", {}).get("tasks", {}).values():
        parameters = task.get("inputs", {}).get("parameters", {})
        stats = parameters.get("stats_options_json", {}).get("runtimeValue", {})
        if isinstance(stats.get("constant"), str):
            options = json.loads(stats["constant"])
            stats["constant"] = json.dumps({k: v for k, v in options.items() if v is not None})
    return spec_lib.PipelineDocs(spec, copy.deepcopy(docs.platform_spec))


def diff(expected: Any, actual: Any, path: str = "") -> list[str]:
    """Lists differences both ways: keys only in one side and values that differ.

    Args:
      expected: E.g. the golden spec.
      actual: E.g. the freshly compiled spec.
      path: Prefix for the reported paths.

    Returns:
      Lines such as `missing: a.b`, `unexpected: a.c`, `changed: a.d: 1 != 2`.
    """
    if isinstance(expected, dict) and isinstance(actual, dict):
        lines = []
        for key in sorted(set(expected) | set(actual), key=str):
            sub = f"{path}.{key}" if path else str(key)
            if key not in actual:
                lines.append(f"missing: {sub}")
            elif key not in expected:
                lines.append(f"unexpected: {sub}")
            else:
                lines.extend(diff(expected[key], actual[key], sub))
        return lines
    if isinstance(expected, list) and isinstance(actual, list) and len(expected) == len(actual):
        lines = []
        for i, (e, a) in enumerate(zip(expected, actual, strict=True)):
            lines.extend(diff(e, a, f"{path}[{i}]"))
        return lines
    return [] if expected == actual else [f"changed: {path}: {expected!r} != {actual!r}"]
