"""The serving error hierarchy and its one mapping to gRPC and HTTP status codes."""

from __future__ import annotations

import enum

import grpc


class Code(enum.Enum):
    """Canonical status codes (same names and numbers as gRPC's and TensorFlow's)."""

    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16


# The one place where codes meet transports: gRPC status and TF Serving's HTTP status, the latter
# as tensorflow_serving/model_servers/http_server.cc (ToHTTPStatusCode) maps them (numbers from
# net_http/public/response_code_enum.h). Tests check observable statuses (test_parity.py).
_HTTP_STATUS = {
    Code.OK: 200,
    Code.CANCELLED: 499,
    Code.UNKNOWN: 500,
    Code.INVALID_ARGUMENT: 400,
    Code.DEADLINE_EXCEEDED: 504,
    Code.NOT_FOUND: 404,
    Code.ALREADY_EXISTS: 409,
    Code.PERMISSION_DENIED: 403,
    Code.RESOURCE_EXHAUSTED: 429,
    Code.FAILED_PRECONDITION: 400,
    Code.ABORTED: 409,
    Code.OUT_OF_RANGE: 400,
    Code.UNIMPLEMENTED: 501,
    Code.INTERNAL: 500,
    Code.UNAVAILABLE: 503,
    Code.DATA_LOSS: 500,
    Code.UNAUTHENTICATED: 401,
}
_GRPC_STATUS = {code: getattr(grpc.StatusCode, code.name) for code in Code}


def grpc_status(code: Code) -> grpc.StatusCode:
    """Returns the gRPC status code of a canonical code."""
    return _GRPC_STATUS[code]


def http_status(code: Code) -> int:
    """Returns the HTTP status TF Serving's REST API answers for a canonical code."""
    return _HTTP_STATUS[code]


def code_from_http(status: int) -> Code:
    """Returns the likeliest canonical code of a TF Serving HTTP status (400: INVALID_ARGUMENT)."""
    if status == 400:
        return Code.INVALID_ARGUMENT
    if status == 409:
        return Code.ABORTED
    if status == 500:
        return Code.INTERNAL
    for code, value in _HTTP_STATUS.items():
        if value == status:
            return code
    return Code.UNKNOWN


def code_from_grpc(status: grpc.StatusCode) -> Code:
    """Returns the canonical code of a gRPC status code."""
    return Code[status.name]


class ServingError(Exception):
    """A request or lifecycle failure with a canonical status code and a client-facing message."""

    code: Code = Code.INTERNAL

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgumentError(ServingError):
    """The request is malformed: wrong inputs, dtypes, shapes or feature values."""

    code = Code.INVALID_ARGUMENT


class NotFoundError(ServingError):
    """Unknown model, version, label or route."""

    code = Code.NOT_FOUND


class FailedPreconditionError(ServingError):
    """The model cannot serve this request kind (e.g. unknown signature, wrong method)."""

    code = Code.FAILED_PRECONDITION


class ResourceExhaustedError(ServingError):
    """The request exceeds a configured limit."""

    code = Code.RESOURCE_EXHAUSTED


class UnavailableError(ServingError):
    """Nothing can answer yet (no version loaded) or the server is shutting down."""

    code = Code.UNAVAILABLE


class UnimplementedError(ServingError):
    """The API exists in TF Serving but this server does not implement it."""

    code = Code.UNIMPLEMENTED


class InternalError(ServingError):
    """An unexpected failure inside the server."""

    code = Code.INTERNAL


class ModelLoadError(ServingError):
    """A model version could not be loaded (bad files, failed warm-up)."""

    code = Code.UNKNOWN


_BY_CODE: dict[Code, type[ServingError]] = {
    Code.INVALID_ARGUMENT: InvalidArgumentError,
    Code.NOT_FOUND: NotFoundError,
    Code.FAILED_PRECONDITION: FailedPreconditionError,
    Code.RESOURCE_EXHAUSTED: ResourceExhaustedError,
    Code.UNAVAILABLE: UnavailableError,
    Code.UNIMPLEMENTED: UnimplementedError,
    Code.INTERNAL: InternalError,
}


def error_for_code(code: Code, message: str) -> ServingError:
    """Builds the error class of a canonical code (INTERNAL's for codes without their own)."""
    error = _BY_CODE.get(code, InternalError)(message)
    error.code = code
    return error
