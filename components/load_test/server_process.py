"""Runs the model server as a child process reachable only from this step; always stops it.

Two servers, one interface (TF Serving's gRPC API, spoken with its own `tensorflow_serving.apis`
stubs):

- `tensorflow_model_server`, the production server, when the binary is on PATH (the KFP image
  copies it from `tensorflow/serving`). It listens on a UNIX socket in the step's scratch
  folder (`--grpc_socket_path`, `--port=0`: no TCP listener, no REST), so nothing outside the
  step reaches it and no port can be taken by another process;
- otherwise this project's `python -m serving` on a free 127.0.0.1 port. `components/` may not
  import `serving/` (tests/test_architecture.py): it is started as a process of the same
  Python, as a Deployment would start it.
"""

import contextlib
import ctypes
import gc
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from types import TracebackType

import grpc
from tensorflow_serving.apis import get_model_status_pb2, model_service_pb2_grpc

from components.load_test.settings import PYTHON_SERVER, TF_SERVING

LOOPBACK = "127.0.0.1"
# TF Serving's ModelVersionStatus states (tensorflow_serving/apis/get_model_status.proto).
_AVAILABLE = get_model_status_pb2.ModelVersionStatus.AVAILABLE
_END = get_model_status_pb2.ModelVersionStatus.END
# What `serving/server.py` raises when the gRPC port is taken (the server binds without
# SO_REUSEPORT, so a port taken between our probe and its bind is reported, not shared).
_BIND_FAILURE = "Cannot bind gRPC"
_PR_SET_PDEATHSIG = 1  # linux/prctl.h
_STOP_GRACE_S = 10.0
_LOG_TAIL_BYTES = 1500
_SOCKET_NAME = "grpc.sock"


class ServerStartError(RuntimeError):
    """The server process exited, or its model failed to load, before serving."""


class LoadTimeoutError(TimeoutError):
    """The model did not become AVAILABLE within the load timeout."""


def free_loopback_port() -> int:
    """Returns a TCP port free on 127.0.0.1 right now (the kernel's choice for port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def tf_serving_binary() -> str | None:
    """The `tensorflow_model_server` on PATH, or None (then the Python server is used)."""
    return shutil.which(TF_SERVING)


def tf_serving_command(
    binary: str, model_name: str, model_base_path: str, socket_path: str
) -> list[str]:
    """The production server's command line for a load test (flags of TF Serving's main.cc).

    Args:
      binary: Path of `tensorflow_model_server`.
      model_name: Name to serve the model as.
      model_base_path: Directory of numeric version folders.
      socket_path: UNIX socket to listen on (the only listener).

    Returns:
      The argv.
    """
    return [
        binary,
        # gRPC on the UNIX socket only: port 0 opens no TCP listener (server.cc accepts port 0
        # when a socket path is set); REST port 0 is TF Serving's "REST off".
        "--port=0",
        f"--grpc_socket_path={socket_path}",
        "--rest_api_port=0",
        f"--model_name={model_name}",
        f"--model_base_path={model_base_path}",
        # Nothing else arrives in the directory: poll rarely.
        "--file_system_poll_wait_seconds=60",
        # The candidate is a complete local copy: a failed load is the model's fault.
        "--max_num_load_retries=0",
        # Replays assets.extra/tf_serving_warmup_requests before AVAILABLE, as production does.
        "--enable_model_warmup=true",
    ]


def _parent_death_signal() -> Callable[[], None] | None:
    """A function for the child, between fork and exec, that makes Linux SIGKILL the server
    when the step's process dies, even by SIGKILL (an OOM kill, a pod eviction), so it never
    outlives the step. None off Linux.

    libc and its `prctl` are looked up here, in the parent: the child then only calls a loaded
    function (no dynamic loading between fork and exec, where another thread of the step may
    have held the loader's lock).
    """
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl

    def set_signal() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)

    return set_signal


class ServerProcess:
    """One model-server child serving `model_base_path` as `model_name`, local to the step.

    Use as a context manager: the process is stopped (SIGTERM, then SIGKILL after a bounded
    grace) on every exit path, exceptions included; and it dies with its parent.
    """

    def __init__(
        self,
        model_name: str,
        model_base_path: str,
        log_path: str,
        port: int,
        input_validation: str = "off",
        binary: str | None = None,
    ) -> None:
        """Describes the server (nothing starts before `start`).

        Args:
          model_name: Name to serve the model as.
          model_base_path: Directory of numeric version folders.
          log_path: File receiving the server's output; its folder also holds the socket.
          port: Loopback port of the Python server (unused by `tensorflow_model_server`).
          input_validation: The Python server's `--input_validation`.
          binary: `tensorflow_model_server` to run; None runs `python -m serving`.
        """
        self.model_name = model_name
        self.input_validation = input_validation
        self.model_base_path = model_base_path
        self.log_path = log_path
        self.port = port
        self.binary = binary
        self.server = TF_SERVING if binary else PYTHON_SERVER
        self.socket_path = os.path.join(os.path.dirname(os.path.abspath(log_path)), _SOCKET_NAME)
        self.address = f"unix:{self.socket_path}" if binary else f"{LOOPBACK}:{port}"
        self.process: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        """The server's command line (TF Serving's flag names, see docs/serving.md)."""
        if self.binary:
            return tf_serving_command(
                self.binary, self.model_name, self.model_base_path, self.socket_path
            )
        return [
            sys.executable,
            "-m",
            "serving",
            f"--host={LOOPBACK}",
            f"--port={self.port}",
            "--rest_api_port=-1",
            f"--model_name={self.model_name}",
            f"--model_base_path={self.model_base_path}",
            # Nothing else arrives in the directory: poll rarely, stop without draining.
            "--file_system_poll_wait_seconds=60",
            "--drain_seconds=0",
            # The candidate is a complete local copy: a failed load is the model's fault, not a
            # half-arrived directory, so it is reported at once instead of retried (a retrying
            # version stays LOADING, as TF Serving's loader_harness.cc reports it).
            "--max_num_load_retries=0",
            "--log_format=text",
            f"--input_validation={self.input_validation}",
        ]

    def start(self) -> None:
        """Starts the process; its output goes to `log_path` (a pipe could fill and block it)."""
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=_parent_death_signal(),
                # Not the step's process group: a Ctrl-C meant for the step is handled by it.
                start_new_session=True,
            )

    def log_tail(self) -> str:
        """The end of the server's log, for error messages."""
        try:
            with open(self.log_path, "rb") as f:
                f.seek(max(0, os.path.getsize(self.log_path) - _LOG_TAIL_BYTES))
                return f.read().decode("utf-8", "replace")
        except OSError as e:
            return f"(no server log: {e})"

    def bind_failed(self) -> bool:
        """True when the process exited because its port was taken."""
        return (
            self.process is not None
            and self.process.poll() is not None
            and _BIND_FAILURE in self.log_tail()
        )

    def wait_until_available(self, deadline: float) -> None:
        """Polls ModelService.GetModelStatus until a version is AVAILABLE.

        Args:
          deadline: `time.monotonic()` value after which to give up.

        Raises:
          ServerStartError: If the process exits or the version's load ends in an error.
          LoadTimeoutError: If the deadline passes first.
        """
        assert self.process is not None, "start() first"
        request = get_model_status_pb2.GetModelStatusRequest()
        request.model_spec.name = self.model_name
        with grpc.insecure_channel(self.address) as channel:
            stub = model_service_pb2_grpc.ModelServiceStub(channel)
            while True:
                code = self.process.poll()
                if code is not None:
                    raise ServerStartError(
                        f"model server exited with code {code} before serving:\n{self.log_tail()}"
                    )
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise LoadTimeoutError("model not AVAILABLE before the load timeout")
                try:
                    response = stub.GetModelStatus(request, timeout=min(2.0, remaining))
                except grpc.RpcError:
                    # Not listening yet (UNAVAILABLE) or no version found yet (NOT_FOUND).
                    time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))
                    continue
                states = {s.state for s in response.model_version_status}
                if _AVAILABLE in states:
                    return
                failed = [
                    s
                    for s in response.model_version_status
                    if s.state == _END and s.status.error_code
                ]
                if failed:
                    raise ServerStartError(
                        f"version {failed[0].version} failed to load: "
                        f"{failed[0].status.error_message}"
                    )
                time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after a bounded grace; waits for the process to be reaped."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=_STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=_STOP_GRACE_S)

    def __enter__(self) -> "ServerProcess":
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def return_freed_memory() -> None:
    """Gives the heap that earlier steps freed back to the OS before a server process starts.

    The step runs in the pipeline's process after TFT, Keras and TFMA: their freed memory stays
    in glibc's heaps (one arena per thread that allocated) and counts in the process's RSS
    while the server process adds its own, the run's peak. `malloc_trim(0)` releases the free
    pages of every arena; elsewhere than glibc there is nothing to call.
    """
    gc.collect()
    trim = getattr(ctypes.CDLL(None), "malloc_trim", None)
    if trim is not None:
        trim(0)


@contextlib.contextmanager
def serve(
    model_name: str,
    model_base_path: str,
    log_path: str,
    deadline: float,
    attempts: int = 3,
    input_validation: str = "off",
    binary: str | None = None,
) -> Iterator[ServerProcess]:
    """Starts a server reachable only from this step and waits until the model is AVAILABLE.

    The Python server takes a free loopback port; a port can be taken between the probe and
    the server's bind, the server then exits saying so, and another free port is tried (up to
    `attempts` times). `tensorflow_model_server` listens on a UNIX socket: one attempt. The
    process is stopped when the block exits, however it exits.

    Args:
      model_name: Name to serve the model as.
      model_base_path: Directory of numeric version folders.
      log_path: File receiving the server's output.
      deadline: `time.monotonic()` value by which the model must be AVAILABLE.
      attempts: Ports to try.
      input_validation: The Python server's `--input_validation` (`off`, `log`, `enforce`).
      binary: `tensorflow_model_server` to run (see `tf_serving_binary`); None runs the
        Python server.

    Yields:
      The running server.

    Raises:
      ServerStartError, LoadTimeoutError: See `ServerProcess.wait_until_available`.
    """
    return_freed_memory()
    for attempt in range(1, attempts + 1):
        server = ServerProcess(
            model_name,
            model_base_path,
            log_path,
            0 if binary else free_loopback_port(),
            input_validation,
            binary,
        )
        with server:
            try:
                server.wait_until_available(deadline)
            except ServerStartError:
                if not binary and attempt < attempts and server.bind_failed():
                    continue
                raise
            yield server
            return
    raise AssertionError("unreachable")  # pragma: no cover
