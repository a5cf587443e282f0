"""Serves a pushed model briefly in-process and answers one gRPC Predict and Classify."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping, Sequence

import tensorflow as tf

import model_contract
import schemas
from serving import schema
from serving.client import ClientSettings, ModelRef, PredictionClient
from serving.examples import ExampleBuilder
from serving.server import ModelServer
from serving.settings import ModelSettings, ServerSettings

logger = logging.getLogger(__name__)


def serve_and_predict(
    base_path: str,
    model_name: str,
    rows: Sequence[Mapping[str, object]],
    timeout_s: float = 60.0,
) -> dict[str, object]:
    """Starts the server on free loopback ports, predicts over gRPC, and shuts down.

    Args:
      base_path: The Pusher's `<serving_base>/<model_name>` directory.
      model_name: Model name to serve and request.
      rows: Raw CSV-like rows (feature name -> value, None for missing).
      timeout_s: Longest wait for the latest version to become AVAILABLE.

    Returns:
      `{"model_version", "scores" (P(big tipper) per row), "classes" (top label per row),
      "predict_latency_ms", "classify_latency_ms", "grpc_port"}`.

    Raises:
      FileNotFoundError: If `base_path` holds no version.
      serving.errors.ServingError: If the version does not load or a request fails.
      serving.examples.ExampleBuildError: If a row lacks a required feature.
    """
    versions = model_contract.list_version_dirs(tf.io.gfile, base_path)
    if not versions:
        raise FileNotFoundError(f"No model version under {base_path}")
    latest = max(versions)
    schema_path = schemas.schema_path("taxi")
    builder = ExampleBuilder(schema.load_features(schema_path))
    examples = [e.SerializeToString() for e in builder.build_all(rows)]
    settings = ServerSettings(
        models=(ModelSettings(model_name, os.path.abspath(base_path)),),
        host="127.0.0.1",
        grpc_port=0,
        rest_port=None,
        schema_path=schema_path,
        drain_timeout_s=5.0,
    )
    server = ModelServer(settings)
    server.start()
    try:
        served = server.manager.wait_until_available(model_name, latest, timeout_s)
        client_settings = ClientSettings(target=f"127.0.0.1:{server.grpc_port}", deadline_s=30.0)
        with PredictionClient(client_settings) as client:
            model = ModelRef(model_name)
            start = time.perf_counter()
            prediction = client.predict(model, examples)
            predict_ms = (time.perf_counter() - start) * 1e3
            start = time.perf_counter()
            classes = client.classify(model, examples)
            classify_ms = (time.perf_counter() - start) * 1e3
        scores = [float(v) for v in prediction.outputs["probabilities"].ravel()]
        result: dict[str, object] = {
            "model_version": prediction.version or served,
            "scores": scores,
            "classes": [max(row, key=lambda c: c[1])[0] for row in classes.classes],
            "predict_latency_ms": round(predict_ms, 3),
            "classify_latency_ms": round(classify_ms, 3),
            "grpc_port": server.grpc_port,
        }
        logger.info(
            "Served %s version %s: %d predictions in %.1f ms",
            model_name,
            result["model_version"],
            len(scores),
            predict_ms,
        )
        return result
    finally:
        server.stop()
