"""Shared fixtures: the example kubeflow config and its compiled spec (compiled once)."""

import os

import pytest

from runners.kubeflow import compiler
from runners.kubeflow.config import KubeflowConfig, load_kubeflow_config

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
EXAMPLE_CONFIG = os.path.join(REPO, "kubeflow", "pipeline", "config.example.json")
GOLDEN = os.path.join(REPO, "kubeflow", "pipeline", "golden", "pipeline.yaml")
TOOL_PYTHON = os.path.join(REPO, ".venv-kfp-kubernetes", "bin", "python")


@pytest.fixture(scope="session")
def example_config() -> KubeflowConfig:
    return load_kubeflow_config(EXAMPLE_CONFIG)


@pytest.fixture(scope="session")
def compiled(example_config):
    return compiler.compile_pipeline(example_config)
