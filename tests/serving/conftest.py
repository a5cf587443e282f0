"""Fixtures: real contract SavedModels, an embedded server, or an external one from env vars."""

from __future__ import annotations

import dataclasses
import os
import pathlib
import shutil
import time
from collections.abc import Callable, Iterator

import pytest
import tensorflow as tf

import schemas
from serving import schema
from serving.client import ClientSettings, ModelRef, PredictionClient, RestClient
from serving.examples import ExampleBuilder
from serving.schema import FeatureSpec
from serving.server import ModelServer
from serving.settings import ModelSettings, ServerSettings
from tests.serving.support import fixture

MODEL = "chicago_taxi"
MAX_REQUEST_BYTES = 4 * 1024 * 1024


@dataclasses.dataclass(frozen=True)
class Target:
    """Where the contract tests send requests, and what they may assume there."""

    grpc: str
    rest: str
    model: str
    embedded: bool
    labels: dict[str, int]
    server: ModelServer | None = None


# Fixtures that start a server or build SavedModels: tests using them are `slow`, so that
# `make test-fast` (-m "not slow") runs only the tests that need neither.
SLOW_FIXTURES = frozenset({"target", "embedded", "model_library", "serve_model"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = pathlib.Path(__file__).parent
    for item in items:
        if here in item.path.parents and SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def features() -> tuple[FeatureSpec, ...]:
    return schema.load_features(schemas.schema_path("taxi"))


@pytest.fixture(scope="session")
def examples(features: tuple[FeatureSpec, ...]) -> list[bytes]:
    builder = ExampleBuilder(features)
    return [e.SerializeToString() for e in builder.build_all(fixture.sample_rows())]


@pytest.fixture(scope="session")
def model_library(
    tmp_path_factory: pytest.TempPathFactory, features: tuple[FeatureSpec, ...]
) -> dict[int, str]:
    """Two built versions (different biases), copied into base paths by tests."""
    root = tmp_path_factory.mktemp("library")
    return {
        1: fixture.build_model(str(root / "1"), features, seed=1, bias=-1.0, with_spin=True),
        2: fixture.build_model(str(root / "2"), features, seed=2, bias=1.0, with_spin=True),
    }


def mutate(example: bytes, **features: object) -> bytes:
    """Returns the example with features replaced (None removes one), typed by the value."""
    e = tf.train.Example.FromString(example)
    for name, value in features.items():
        if value is None:
            if name in e.features.feature:
                del e.features.feature[name]
        elif isinstance(value, float):
            e.features.feature[name].Clear()
            e.features.feature[name].float_list.value.append(value)
        elif isinstance(value, int):
            e.features.feature[name].Clear()
            e.features.feature[name].int64_list.value.append(value)
        else:
            e.features.feature[name].Clear()
            e.features.feature[name].bytes_list.value.append(str(value).encode())
    return e.SerializeToString()


def install_version(library: dict[int, str], source: int, base: str, version: int) -> str:
    """Copies a library model to `<base>/<version>` atomically (hidden temp name, rename)."""
    os.makedirs(base, exist_ok=True)
    final = os.path.join(base, str(version))
    tmp = os.path.join(base, f".tmp-{version}")
    shutil.copytree(library[source], tmp)
    os.rename(tmp, final)
    return final


def wait_for(predicate: Callable[[], bool], timeout_s: float = 60.0) -> None:
    """Polls `predicate` until true; fails the test after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def server_settings(**overrides: object) -> ServerSettings:
    values: dict[str, object] = {
        "host": "127.0.0.1",
        "grpc_port": 0,
        "rest_port": 0,
        "file_system_poll_s": 0.2,
        "schema_path": schemas.schema_path("taxi"),
        "drain_timeout_s": 5.0,
        "max_request_bytes": MAX_REQUEST_BYTES,
    }
    values.update(overrides)
    return ServerSettings(**values)  # type: ignore[arg-type]


@dataclasses.dataclass(frozen=True)
class Served:
    """A server started for one test, a gRPC client of it, and its model base path."""

    server: ModelServer
    client: PredictionClient
    base: str


@pytest.fixture()
def serve_model(
    tmp_path: pathlib.Path, model_library: dict[int, str]
) -> Iterator[Callable[..., Served]]:
    """Starts servers of `MODEL` for one test (gRPC only unless overridden); stops them after.

    Call it with the library versions to install first (each as its own number), the version
    to wait for (None: do not wait) and `server_settings` overrides.
    """
    started: list[Served] = []

    def start(
        versions: tuple[int, ...] = (1,), wait_for_version: int | None = 1, **overrides: object
    ) -> Served:
        base = str(tmp_path / MODEL)
        os.makedirs(base, exist_ok=True)
        for version in versions:
            install_version(model_library, version, base, version)
        values: dict[str, object] = {"models": (ModelSettings(MODEL, base),), "rest_port": None}
        server = ModelServer(server_settings(**{**values, **overrides}))
        server.start()
        client = PredictionClient(
            ClientSettings(f"127.0.0.1:{server.grpc_port}", deadline_s=30, max_retries=0)
        )
        served = Served(server, client, base)
        started.append(served)
        if wait_for_version is not None:
            server.manager.wait_until_available(MODEL, wait_for_version, 60)
        return served

    yield start
    for served in reversed(started):
        served.client.close()
        served.server.stop()


@pytest.fixture(scope="session")
def embedded(
    tmp_path_factory: pytest.TempPathFactory, model_library: dict[int, str]
) -> Iterator[ModelServer]:
    """Serves versions 1 and 2 (policy all, labels stable=1 canary=2) and an empty model."""
    root = tmp_path_factory.mktemp("serving")
    base = str(root / MODEL)
    install_version(model_library, 1, base, 1)
    install_version(model_library, 2, base, 2)
    os.makedirs(root / "pending")
    config = root / "models.config"
    config.write_text(
        f"""model_config_list {{
  config {{
    name: "{MODEL}"
    base_path: "{base}"
    model_platform: "tensorflow"
    model_version_policy {{ all {{}} }}
    version_labels {{ key: "stable" value: 1 }}
    version_labels {{ key: "canary" value: 2 }}
  }}
  config {{
    name: "pending"
    base_path: "{root / "pending"}"
    model_platform: "tensorflow"
  }}
}}
"""
    )
    server = ModelServer(server_settings(model_config_file=str(config)))
    server.start()
    try:
        server.manager.wait_until_available(MODEL, 1, 120)
        server.manager.wait_until_available(MODEL, 2, 120)
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def target(request: pytest.FixtureRequest) -> Target:
    """The embedded server, or an external one: SERVING_TEST_GRPC_ADDR + SERVING_TEST_REST_URL.

    For an external TF Serving also set SERVING_TEST_MODEL (default chicago_taxi) and, to
    check labels, SERVING_TEST_LABELS="stable=1,canary=2".
    """
    grpc_addr = os.environ.get("SERVING_TEST_GRPC_ADDR", "")
    rest_url = os.environ.get("SERVING_TEST_REST_URL", "")
    if grpc_addr or rest_url:
        if not (grpc_addr and rest_url):
            pytest.fail("Set both SERVING_TEST_GRPC_ADDR and SERVING_TEST_REST_URL")
        labels = {}
        for item in filter(None, os.environ.get("SERVING_TEST_LABELS", "").split(",")):
            key, _, value = item.partition("=")
            labels[key] = int(value)
        return Target(
            grpc_addr,
            rest_url.rstrip("/"),
            os.environ.get("SERVING_TEST_MODEL", MODEL),
            False,
            labels,
        )
    server: ModelServer = request.getfixturevalue("embedded")
    return Target(
        f"127.0.0.1:{server.grpc_port}",
        f"http://127.0.0.1:{server.rest_port}",
        MODEL,
        True,
        {"stable": 1, "canary": 2},
        server,
    )


@pytest.fixture()
def grpc_client(target: Target) -> Iterator[PredictionClient]:
    client = PredictionClient(ClientSettings(target=target.grpc, deadline_s=30.0, max_retries=0))
    yield client
    client.close()


@pytest.fixture()
def rest_client(target: Target) -> Iterator[RestClient]:
    client = RestClient(target.rest, timeout_s=30.0)
    yield client
    client.close()


@pytest.fixture()
def model(target: Target) -> ModelRef:
    return ModelRef(target.model)


def latest_version(client: PredictionClient, model: ModelRef) -> int:
    return max(s["version"] for s in client.model_status(model) if s["state"] == "AVAILABLE")
