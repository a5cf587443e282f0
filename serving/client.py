"""Prediction clients for TF Serving's gRPC and REST APIs (our server or the real one)."""

from __future__ import annotations

import base64
import dataclasses
import http.client
import json
import logging
import time
import urllib.parse
from collections.abc import Mapping, Sequence
from typing import Any, TypeAlias

import grpc
import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)

from serving import tensors, tracing
from serving.errors import Code, ServingError, code_from_grpc, code_from_http, error_for_code
from serving.examples import example_to_json

logger = logging.getLogger(__name__)

ExampleLike: TypeAlias = "bytes | tf.train.Example"
MAX_RETRIES = 4


@dataclasses.dataclass(frozen=True)
class ClientTls:
    """TLS for the gRPC channel.

    Attributes:
      ca_file: PEM CA bundle that signed the server certificate (None = system roots).
      cert_file: PEM client certificate (mutual TLS), with `key_file`.
      key_file: PEM client private key.
      server_name: Override of the name checked against the server certificate.
    """

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    server_name: str | None = None


@dataclasses.dataclass(frozen=True)
class ClientSettings:
    """gRPC client settings.

    Attributes:
      target: `host:port` of the gRPC API.
      deadline_s: Deadline of one call, retries included.
      max_retries: Retries after UNAVAILABLE (no other code is retried); at most 4, as gRPC
        caps a retry policy's attempts at 5.
      backoff_initial_s: First backoff; doubles each retry (gRPC adds +-20% jitter).
      backoff_max_s: Largest backoff.
      wait_for_ready: Calls wait (within the deadline) for the server to accept connections
        instead of failing at once: for clients started alongside the server.
      max_message_bytes: Largest message sent or received.
      tls: TLS settings; None = plaintext.
    """

    target: str = "localhost:8500"
    deadline_s: float = 10.0
    max_retries: int = 3
    backoff_initial_s: float = 0.05
    backoff_max_s: float = 2.0
    max_message_bytes: int = 64 * 1024 * 1024
    tls: ClientTls | None = None
    wait_for_ready: bool = False

    def __post_init__(self) -> None:
        if not 0 <= self.max_retries <= MAX_RETRIES:
            raise ValueError(
                f"ClientSettings.max_retries must be in [0, {MAX_RETRIES}] (gRPC allows at most "
                f"{MAX_RETRIES + 1} attempts), got {self.max_retries}"
            )
        if self.backoff_initial_s <= 0 or self.backoff_max_s < self.backoff_initial_s:
            raise ValueError(
                "ClientSettings needs 0 < backoff_initial_s <= backoff_max_s, got "
                f"{self.backoff_initial_s} and {self.backoff_max_s}"
            )

    def service_config(self) -> str:
        """The channel's service config: gRPC's own retry policy, UNAVAILABLE only.

        gRPC retries within the call's deadline, so the deadline covers every attempt.
        """
        policy = {
            "maxAttempts": self.max_retries + 1,
            "initialBackoff": f"{self.backoff_initial_s:.3f}s",
            "maxBackoff": f"{self.backoff_max_s:.3f}s",
            "backoffMultiplier": 2,
            "retryableStatusCodes": ["UNAVAILABLE"],
        }
        config: dict[str, Any] = {"methodConfig": [{"name": [{}]}]}
        if self.max_retries:
            config["methodConfig"][0]["retryPolicy"] = policy
        return json.dumps(config)


@dataclasses.dataclass(frozen=True)
class ModelRef:
    """The model a request addresses: a name with an optional version or label."""

    name: str
    version: int | None = None
    label: str | None = None

    def __post_init__(self) -> None:
        if self.version is not None and self.label:
            raise ValueError("Give a version or a label, not both")

    def fill(self, spec: model_pb2.ModelSpec, signature: str = "") -> None:
        """Writes the reference into a ModelSpec."""
        spec.name = self.name
        if self.version is not None:
            spec.version.value = self.version
        elif self.label:
            spec.version_label = self.label
        if signature:
            spec.signature_name = signature


@dataclasses.dataclass(frozen=True)
class PredictResult:
    """Predict outputs and the version that served them (None over REST)."""

    version: int | None
    outputs: dict[str, np.ndarray]


@dataclasses.dataclass(frozen=True)
class ClassifyResult:
    """Per example, (label, score) pairs; and the serving version (None over REST)."""

    version: int | None
    classes: list[list[tuple[str, float]]]


@dataclasses.dataclass(frozen=True)
class RegressResult:
    """One value per example; and the serving version (None over REST)."""

    version: int | None
    values: list[float]


def _serialized(examples: Sequence[ExampleLike]) -> list[bytes]:
    return [e if isinstance(e, bytes) else e.SerializeToString() for e in examples]


def _parsed(examples: Sequence[ExampleLike]) -> list[tf.train.Example]:
    return [tf.train.Example.FromString(e) if isinstance(e, bytes) else e for e in examples]


def _read(path: str | None) -> bytes | None:
    if path is None:
        return None
    with open(path, "rb") as f:
        return f.read()


class PredictionClient:
    """gRPC client of PredictionService and ModelService with deadlines and retries."""

    def __init__(
        self, settings: ClientSettings, tracer_provider: tracing.TracerProvider | None = None
    ) -> None:
        """Opens a channel (connection is lazy).

        Args:
          settings: Target, deadline, retries, TLS, message size.
          tracer_provider: Where the client spans go (None = OpenTelemetry's global one).
        """
        self._settings = settings
        options: list[tuple[str, Any]] = [
            ("grpc.max_send_message_length", settings.max_message_bytes),
            ("grpc.max_receive_message_length", settings.max_message_bytes),
            ("grpc.enable_retries", 1),
            ("grpc.service_config", settings.service_config()),
        ]
        if settings.tls is not None:
            tls = settings.tls
            credentials = grpc.ssl_channel_credentials(
                root_certificates=_read(tls.ca_file),
                private_key=_read(tls.key_file),
                certificate_chain=_read(tls.cert_file),
            )
            if tls.server_name:
                options.append(("grpc.ssl_target_name_override", tls.server_name))
            self._channel = grpc.secure_channel(settings.target, credentials, options=options)
        else:
            self._channel = grpc.insecure_channel(settings.target, options=options)
        # W3C trace context: each call gets a CLIENT span whose `traceparent` goes out as
        # metadata, so the server's span joins the caller's trace (serving/tracing.py).
        traced = tracing.traced_channel(self._channel, tracer_provider)
        self._prediction = prediction_service_pb2_grpc.PredictionServiceStub(traced)
        self._models = model_service_pb2_grpc.ModelServiceStub(traced)

    def close(self) -> None:
        """Closes the channel."""
        self._channel.close()

    def __enter__(self) -> PredictionClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, method: Any, request: Any) -> Any:
        # Retries (UNAVAILABLE only, with backoff) are the channel's retry policy.
        s = self._settings
        try:
            return method(request, timeout=s.deadline_s, wait_for_ready=s.wait_for_ready)
        except grpc.RpcError as e:
            code, details = e.code(), e.details() or ""  # type: ignore[attr-defined]
            raise error_for_code(code_from_grpc(code), details) from None

    def wait_until_available(self, model: ModelRef, timeout_s: float) -> int:
        """Waits for a server (perhaps still starting) to have an AVAILABLE version.

        A readiness wait, like a Kubernetes probe, for clients started with the server (tests,
        benchmark): each status call also waits for the connection (`wait_for_ready`).

        Args:
          model: The model.
          timeout_s: Longest wait.

        Returns:
          The newest AVAILABLE version.

        Raises:
          UnavailableError: If none is AVAILABLE within `timeout_s` (or the error last seen).
        """
        deadline = time.monotonic() + timeout_s
        request = get_model_status_pb2.GetModelStatusRequest()
        model.fill(request.model_spec)
        last = ""
        while time.monotonic() < deadline:
            remaining = max(deadline - time.monotonic(), 0.001)
            try:
                response = self._models.GetModelStatus(
                    request, timeout=remaining, wait_for_ready=True
                )
            except grpc.RpcError as e:
                last = f"{e.code().name}: {e.details()}"  # type: ignore[attr-defined]
            else:
                available = [
                    s.version
                    for s in response.model_version_status
                    if s.state == get_model_status_pb2.ModelVersionStatus.AVAILABLE
                ]
                if available:
                    return max(available)
                last = "no version AVAILABLE"
            time.sleep(min(0.2, max(deadline - time.monotonic(), 0)))
        raise error_for_code(
            Code.UNAVAILABLE, f"{model.name}: no AVAILABLE version after {timeout_s}s ({last})"
        )

    def predict(
        self,
        model: ModelRef,
        examples: Sequence[ExampleLike],
        signature: str = "serving_default",
        input_name: str = "examples",
        output_filter: Sequence[str] = (),
    ) -> PredictResult:
        """Sends serialized tf.Examples to a Predict signature.

        Args:
          model: Model name and optional version or label.
          examples: tf.Examples or their serialized bytes.
          signature: Signature key.
          input_name: The signature's input holding serialized examples.
          output_filter: Outputs to return (empty = all).

        Returns:
          The outputs as arrays and the version that answered.

        Raises:
          ServingError: With the server's status code and message.
        """
        return self.predict_tensors(
            model,
            {input_name: tensors.string_tensor(_serialized(examples))},
            signature,
            output_filter,
        )

    def predict_tensors(
        self,
        model: ModelRef,
        inputs: Mapping[str, np.ndarray | tensor_pb2.TensorProto],
        signature: str = "serving_default",
        output_filter: Sequence[str] = (),
    ) -> PredictResult:
        """Sends arbitrary input tensors to a Predict signature.

        Args:
          model: Model reference.
          inputs: Input alias to array or TensorProto.
          signature: Signature key.
          output_filter: Outputs to return (empty = all).

        Returns:
          See `predict`.

        Raises:
          ServingError: With the server's status code and message.
        """
        request = predict_pb2.PredictRequest()
        model.fill(request.model_spec, signature)
        for name, value in inputs.items():
            proto = (
                value
                if isinstance(value, tensor_pb2.TensorProto)
                else tensors.to_tensor_proto(value)
            )
            request.inputs[name].CopyFrom(proto)
        request.output_filter.extend(output_filter)
        response = self._call(self._prediction.Predict, request)
        return PredictResult(
            response.model_spec.version.value,
            {k: tensors.to_ndarray(v) for k, v in response.outputs.items()},
        )

    def classify(
        self, model: ModelRef, examples: Sequence[ExampleLike], signature: str = "classify"
    ) -> ClassifyResult:
        """Calls Classify.

        Args:
          model: Model reference.
          examples: tf.Examples or their serialized bytes.
          signature: A signature with method `tensorflow/serving/classify`.

        Returns:
          (label, score) pairs per example.

        Raises:
          ServingError: With the server's status code and message.
        """
        request = classification_pb2.ClassificationRequest()
        model.fill(request.model_spec, signature)
        request.input.example_list.examples.extend(_parsed(examples))
        response = self._call(self._prediction.Classify, request)
        return ClassifyResult(
            response.model_spec.version.value,
            [[(c.label, c.score) for c in row.classes] for row in response.result.classifications],
        )

    def regress(
        self, model: ModelRef, examples: Sequence[ExampleLike], signature: str = "regress"
    ) -> RegressResult:
        """Calls Regress (see `classify` for the arguments); returns one value per example."""
        request = regression_pb2.RegressionRequest()
        model.fill(request.model_spec, signature)
        request.input.example_list.examples.extend(_parsed(examples))
        response = self._call(self._prediction.Regress, request)
        return RegressResult(
            response.model_spec.version.value, [r.value for r in response.result.regressions]
        )

    def model_status(self, model: ModelRef) -> list[dict[str, Any]]:
        """Returns each version's state: dicts with version, state, error_code, error_message."""
        request = get_model_status_pb2.GetModelStatusRequest()
        model.fill(request.model_spec)
        response = self._call(self._models.GetModelStatus, request)
        return [
            {
                "version": s.version,
                "state": get_model_status_pb2.ModelVersionStatus.State.Name(s.state),
                "error_code": Code(s.status.error_code).name,
                "error_message": s.status.error_message,
            }
            for s in response.model_version_status
        ]

    def metadata(self, model: ModelRef) -> tuple[int, get_model_metadata_pb2.SignatureDefMap]:
        """Returns the serving version and its signature defs."""
        request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
        model.fill(request.model_spec)
        response = self._call(self._prediction.GetModelMetadata, request)
        sig_map = get_model_metadata_pb2.SignatureDefMap()
        response.metadata["signature_def"].Unpack(sig_map)
        return response.model_spec.version.value, sig_map


class RestClient:
    """Client of TF Serving's REST API over one keep-alive connection (not thread-safe)."""

    def __init__(
        self,
        base_url: str,
        timeout_s: float = 10.0,
        tracer_provider: tracing.TracerProvider | None = None,
    ) -> None:
        """Creates the client.

        Args:
          base_url: E.g. `http://127.0.0.1:8501`.
          timeout_s: Socket timeout per request.
          tracer_provider: Where the client spans go (None = OpenTelemetry's global one).
        """
        self._tracer_provider = tracer_provider
        parsed = urllib.parse.urlsplit(base_url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ValueError(f"Bad REST base URL {base_url!r}")
        self._https = parsed.scheme == "https"
        self._host = parsed.hostname
        self._port = parsed.port or (443 if self._https else 80)
        self._timeout = timeout_s
        self._conn: http.client.HTTPConnection | None = None

    def close(self) -> None:
        """Closes the connection."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def request(self, verb: str, path: str, body: object | None = None) -> tuple[int, Any]:
        """Sends one request and returns (HTTP status, decoded JSON or text)."""
        headers = {"Content-Type": "application/json"} if body is not None else {}
        with tracing.rest_client_span(self._tracer_provider, verb, path, headers) as span:
            status, payload = self._send(verb, path, body, headers)
            span.set_attribute("http.response.status_code", status)
        return status, payload

    def _send(
        self, verb: str, path: str, body: object | None, headers: dict[str, str]
    ) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode("utf-8")
        for attempt in (0, 1):
            if self._conn is None:
                cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
                self._conn = cls(self._host, self._port, timeout=self._timeout)
            try:
                self._conn.request(verb, path, body=data, headers=headers)
                response = self._conn.getresponse()
                raw = response.read()
                if response.getheader("Connection", "").lower() == "close":
                    self.close()
                break
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.close()  # a stale keep-alive connection: reconnect once
                if attempt:
                    raise
        kind = response.getheader("Content-Type", "")
        # TF Serving answers some 400s with an empty JSON body (http_rest_api_handler.cc).
        json_body = "json" in kind and raw
        payload = json.loads(raw) if json_body else raw.decode("utf-8", errors="replace")
        return response.status, payload

    def _checked(self, verb: str, path: str, body: object | None = None) -> Any:
        status, payload = self.request(verb, path, body)
        if status != 200:
            message = payload.get("error", "") if isinstance(payload, dict) else str(payload)
            error = error_for_code(code_from_http(status), message)
            error.http_status = status  # type: ignore[attr-defined]
            raise error
        return payload

    @staticmethod
    def model_path(model: ModelRef) -> str:
        """Returns `/v1/models/{name}[/versions/{v}|/labels/{l}]`."""
        path = f"/v1/models/{urllib.parse.quote(model.name)}"
        if model.version is not None:
            path += f"/versions/{model.version}"
        elif model.label:
            path += f"/labels/{urllib.parse.quote(model.label)}"
        return path

    def predict(
        self, model: ModelRef, examples: Sequence[ExampleLike], signature: str = ""
    ) -> PredictResult:
        """Posts serialized examples as base64 `instances` (as TFX's taxi client does).

        Args:
          model: Model reference.
          examples: tf.Examples or serialized bytes.
          signature: Signature key ("" = serving_default).

        Returns:
          Outputs (version None: REST predict does not return it).

        Raises:
          ServingError: With the code TF Serving's HTTP status stands for.
        """
        body: dict[str, Any] = {
            "instances": [
                {"b64": base64.b64encode(e).decode("ascii")} for e in _serialized(examples)
            ]
        }
        if signature:
            body["signature_name"] = signature
        payload = self._checked("POST", self.model_path(model) + ":predict", body)
        predictions = payload["predictions"]
        if predictions and isinstance(predictions[0], dict):
            outputs = {k: np.array([row[k] for row in predictions]) for k in predictions[0]}
        else:
            outputs = {"predictions": np.array(predictions)}
        return PredictResult(None, outputs)

    def classify(
        self, model: ModelRef, examples: Sequence[ExampleLike], signature: str = "classify"
    ) -> ClassifyResult:
        """Posts JSON examples to `:classify`."""
        body = {
            "signature_name": signature,
            "examples": [example_to_json(e) for e in _parsed(examples)],
        }
        payload = self._checked("POST", self.model_path(model) + ":classify", body)
        return ClassifyResult(
            None, [[(c[0], float(c[1])) for c in row] for row in payload["results"]]
        )

    def regress(
        self, model: ModelRef, examples: Sequence[ExampleLike], signature: str = "regress"
    ) -> RegressResult:
        """Posts JSON examples to `:regress`."""
        body = {
            "signature_name": signature,
            "examples": [example_to_json(e) for e in _parsed(examples)],
        }
        payload = self._checked("POST", self.model_path(model) + ":regress", body)
        return RegressResult(None, [float(v) for v in payload["results"]])

    def model_status(self, model: ModelRef) -> list[dict[str, Any]]:
        """GET `/v1/models/...`: the version statuses."""
        return list(self._checked("GET", self.model_path(model))["model_version_status"])

    def metadata(self, model: ModelRef) -> dict[str, Any]:
        """GET `.../metadata`."""
        return dict(self._checked("GET", self.model_path(model) + "/metadata"))


def is_code(error: BaseException, code: Code) -> bool:
    """True if `error` is a ServingError with this code."""
    return isinstance(error, ServingError) and error.code == code
