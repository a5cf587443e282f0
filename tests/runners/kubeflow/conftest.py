"""Shared fixtures: the example kubeflow config and its compiled spec (compiled once)."""

import importlib.util
import os
import sys

import pytest

from runners.kubeflow import compiler
from runners.kubeflow.config import KubeflowConfig, load_kubeflow_config

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
EXAMPLE_CONFIG = os.path.join(REPO, "kubeflow", "pipeline", "config.example.json")
GOLDEN = os.path.join(REPO, "kubeflow", "pipeline", "golden", "pipeline.yaml")
# kfp-kubernetes: in this environment on tfx-1.21 (protobuf 6), in the tool venv on tfx-1.16.
TOOL_PYTHON = (
    sys.executable
    if importlib.util.find_spec("kfp.kubernetes") is not None
    else os.path.join(REPO, ".venv-kfp-kubernetes", "bin", "python")
)


@pytest.fixture(scope="session")
def example_config() -> KubeflowConfig:
    return load_kubeflow_config(EXAMPLE_CONFIG)


@pytest.fixture(scope="session")
def compiled(example_config):
    return compiler.compile_pipeline(example_config)
