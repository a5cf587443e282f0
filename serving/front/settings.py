"""Typed settings of the request-logging front, built once by its CLI."""

from __future__ import annotations

from typing import Annotated

import pydantic.dataclasses
from pydantic import Field

from serving.settings import RequestLogSettings
from typed_config import CONFIG, Settings

_Port = Annotated[int, Field(ge=0, le=65535)]


@pydantic.dataclasses.dataclass(frozen=True, config=CONFIG)
class FrontSettings(Settings):
    """Where the front listens, where TF Serving answers, and what it logs.

    Attributes:
      host: Interface the front binds (containers: 0.0.0.0).
      grpc_port: The clients' gRPC port (TF Serving's 8500).
      rest_port: The clients' REST port (TF Serving's 8501); None = no REST front.
      backend_grpc: TF Serving's gRPC address in the pod (host:port).
      backend_rest: TF Serving's REST base URL in the pod; None = no REST front.
      metrics_port: Prometheus port of the front's own counters; None = off.
      grpc_max_threads: Threads serving gRPC calls (each waits on one backend call).
      max_request_bytes: Largest REST body the front accepts.
      backend_timeout_s: REST calls to the backend are cut after this (gRPC: the client's deadline).
      rest_max_backend_connections: Idle keep-alive connections kept open to the backend.
      drain_s: On SIGTERM, calls in progress get this long to finish.
      request_log: Sampled request logging; None = pure proxy.
    """

    backend_grpc: Annotated[str, Field(min_length=3)]
    host: str = "127.0.0.1"
    grpc_port: _Port = 8500
    rest_port: _Port | None = 8501
    backend_rest: str | None = None
    metrics_port: _Port | None = None
    grpc_max_threads: Annotated[int, Field(ge=1)] = 32
    max_request_bytes: Annotated[int, Field(ge=1024)] = 64 * 1024 * 1024
    backend_timeout_s: Annotated[float, Field(gt=0)] = 300.0
    rest_max_backend_connections: Annotated[int, Field(ge=1)] = 64
    drain_s: Annotated[float, Field(ge=0)] = 10.0
    request_log: RequestLogSettings | None = None
