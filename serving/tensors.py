"""Conversions between TensorProto, numpy arrays and TF Serving's REST JSON values."""

from __future__ import annotations

import base64
import math
from collections.abc import Sequence

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2

from serving.errors import InvalidArgumentError

# dtypes whose values travel as raw bytes in `tensor_content`: little-endian, as TensorFlow
# writes them on every platform it ships for (explicit here, so that decoding never depends
# on the host's byte order).
_CONTENT_DTYPES: dict[int, np.dtype] = {
    types_pb2.DT_FLOAT: np.dtype("<f4"),
    types_pb2.DT_DOUBLE: np.dtype("<f8"),
    types_pb2.DT_INT32: np.dtype("<i4"),
    types_pb2.DT_INT64: np.dtype("<i8"),
    types_pb2.DT_INT8: np.dtype("i1"),
    types_pb2.DT_UINT8: np.dtype("u1"),
    types_pb2.DT_INT16: np.dtype("<i2"),
    types_pb2.DT_BOOL: np.dtype("?"),
}
_NP_TO_DT = {v.newbyteorder("="): k for k, v in _CONTENT_DTYPES.items()}

# Tensor::AsProtoField (tensorflow/core/framework/tensor.cc), which TF Serving uses for
# PredictResponse outputs unless --enable_serialization_as_tensor_content is set
# (tensorflow_serving/servables/tensorflow/predict_util.cc, model_servers/server.cc): the
# typed repeated field of the dtype, every element written; half as its 16-bit patterns.
_RESPONSE_FIELDS: dict[np.dtype, tuple[int, str]] = {
    np.dtype(np.float32): (types_pb2.DT_FLOAT, "float_val"),
    np.dtype(np.float64): (types_pb2.DT_DOUBLE, "double_val"),
    np.dtype(np.int32): (types_pb2.DT_INT32, "int_val"),
    np.dtype(np.int16): (types_pb2.DT_INT16, "int_val"),
    np.dtype(np.int8): (types_pb2.DT_INT8, "int_val"),
    np.dtype(np.uint8): (types_pb2.DT_UINT8, "int_val"),
    np.dtype(np.uint16): (types_pb2.DT_UINT16, "int_val"),
    np.dtype(np.int64): (types_pb2.DT_INT64, "int64_val"),
    np.dtype(np.uint32): (types_pb2.DT_UINT32, "uint32_val"),
    np.dtype(np.uint64): (types_pb2.DT_UINT64, "uint64_val"),
    np.dtype(np.bool_): (types_pb2.DT_BOOL, "bool_val"),
    np.dtype(np.float16): (types_pb2.DT_HALF, "half_val"),
}


def dtype_name(dtype: int) -> str:
    """Returns `DT_FLOAT`-style names for DataType enum values (`DT_<n>` for unknown ones)."""
    try:
        return str(types_pb2.DataType.Name(dtype))
    except ValueError:  # a client may send any int32 as the enum value
        return f"DT_<{dtype}>"


# Typed value fields of a TensorProto, by dtype (the ones `tf.make_ndarray` reads).
_VALUE_FIELDS = {
    types_pb2.DT_FLOAT: "float_val",
    types_pb2.DT_DOUBLE: "double_val",
    types_pb2.DT_INT32: "int_val",
    types_pb2.DT_INT16: "int_val",
    types_pb2.DT_INT8: "int_val",
    types_pb2.DT_UINT8: "int_val",
    types_pb2.DT_INT64: "int64_val",
    types_pb2.DT_BOOL: "bool_val",
    types_pb2.DT_STRING: "string_val",
    types_pb2.DT_HALF: "half_val",
    types_pb2.DT_UINT32: "uint32_val",
    types_pb2.DT_UINT64: "uint64_val",
}


# Typed fields whose element type is the dtype's own (read as is; narrower integers sent in
# `int_val` and half in `half_val` are left to `tf.make_ndarray`).
_EXACT_FIELDS = frozenset(
    (
        types_pb2.DT_FLOAT,
        types_pb2.DT_DOUBLE,
        types_pb2.DT_INT32,
        types_pb2.DT_INT64,
        types_pb2.DT_BOOL,
    )
)


def element_count(proto: tensor_pb2.TensorProto, where: str, limit: int) -> int:
    """Returns the number of elements a TensorProto declares, checked before any allocation.

    TF Serving rejects a tensor whose values match neither its shape nor a single value to
    broadcast (tensorflow/core/framework/tensor.cc, Tensor::FromProto); the element limit is
    ours: a few bytes of `string_val` with a large shape would otherwise expand in memory.

    Args:
      proto: The tensor.
      where: Input description for error messages.
      limit: Most elements allowed.

    Returns:
      The element count (product of the dimensions; 1 for a scalar).

    Raises:
      InvalidArgumentError: Unknown dtype, negative dimension, more elements than `limit`,
        or a value count that matches neither the shape nor a single broadcast value.
    """
    if proto.dtype not in _VALUE_FIELDS:
        raise InvalidArgumentError(f"{where}: unsupported dtype {dtype_name(proto.dtype)}")
    count = 1
    for dim in proto.tensor_shape.dim:
        if dim.size < 0:
            raise InvalidArgumentError(f"{where}: negative dimension {dim.size} in the shape")
        count *= dim.size
        if count > limit:  # stop before the product itself grows without bound
            raise InvalidArgumentError(
                f"{where}: shape {[d.size for d in proto.tensor_shape.dim]} has more than "
                f"{limit} elements (max_request_elements)"
            )
    if proto.tensor_content:
        itemsize = tf.dtypes.as_dtype(proto.dtype).size
        if proto.dtype == types_pb2.DT_STRING or len(proto.tensor_content) != count * itemsize:
            raise InvalidArgumentError(
                f"{where}: tensor_content of {len(proto.tensor_content)} bytes does not match "
                f"{count} elements of {dtype_name(proto.dtype)}"
            )
        return count
    given = len(getattr(proto, _VALUE_FIELDS[proto.dtype]))
    if given not in (count, 1) and not (given == 0 and count == 0):
        raise InvalidArgumentError(
            f"{where}: {given} values do not match shape "
            f"{[d.size for d in proto.tensor_shape.dim]} ({count} elements)"
        )
    return count


def shape_of(proto: tensor_shape_pb2.TensorShapeProto) -> tuple[int, ...] | None:
    """Returns a TensorShapeProto as a tuple (-1 = any size), or None for unknown rank."""
    if proto.unknown_rank:
        return None
    return tuple(d.size for d in proto.dim)


def to_ndarray(proto: tensor_pb2.TensorProto) -> np.ndarray:
    """Returns the value of a TensorProto as a numpy array (bytes objects for strings).

    Numeric values in `tensor_content` (little-endian) or in a typed field holding exactly
    one value per element are read straight into numpy; anything else (a single value to
    broadcast, half and unsigned fields) goes through `tf.make_ndarray`.

    Args:
      proto: The tensor.

    Returns:
      The array.

    Raises:
      InvalidArgumentError: If the proto's values do not match its shape.
    """
    shape = tuple(d.size for d in proto.tensor_shape.dim)
    try:
        count = math.prod(shape)  # exact (numpy's int64 product wraps); 1 for a scalar
        if proto.dtype == types_pb2.DT_STRING:
            # Into an object array element by element: numpy's bytes (`S`) dtype, which a
            # plain list or `np.full` of bytes goes through, drops trailing NUL bytes.
            strings = proto.string_val
            values = np.empty(count if len(strings) == 1 else len(strings), dtype=object)
            if len(strings) == 1:
                values.fill(strings[0])
            else:
                values[:] = list(strings)
            return values.reshape(shape)
        np_type = _CONTENT_DTYPES.get(proto.dtype)
        if np_type is not None:
            if proto.tensor_content:
                if len(proto.tensor_content) != count * np_type.itemsize:
                    raise ValueError("tensor_content length")
                return np.frombuffer(proto.tensor_content, dtype=np_type).reshape(shape)
            field = getattr(proto, _VALUE_FIELDS[proto.dtype])
            if proto.dtype in _EXACT_FIELDS and len(field) == count:
                return np.fromiter(field, dtype=np_type.newbyteorder("="), count=count).reshape(
                    shape
                )
        return tf.make_ndarray(proto)
    except (ValueError, TypeError, OverflowError, MemoryError):
        raise InvalidArgumentError(
            f"Tensor of {dtype_name(proto.dtype)}: values do not match shape {list(shape)}"
        ) from None


def to_response_proto(array: np.ndarray) -> tensor_pb2.TensorProto:
    """Returns an output array as TF Serving writes PredictResponse outputs (typed fields).

    Args:
      array: Output value: numeric, or an object/bytes array for strings.

    Returns:
      The TensorProto, values in the dtype's repeated field (`float_val`, `string_val`, ...).
    """
    proto = tensor_pb2.TensorProto()
    fill_response_proto(array, proto)
    return proto


def fill_response_proto(array: np.ndarray, proto: tensor_pb2.TensorProto) -> None:
    """Writes `to_response_proto(array)` into an empty `proto` (e.g. a response's output,
    which saves building a separate message and copying it in)."""
    array = np.asarray(array)
    typed = _RESPONSE_FIELDS.get(array.dtype.newbyteorder("="))
    if typed is None:
        proto.CopyFrom(to_tensor_proto(array))  # strings (string_val) and anything unusual
        return
    dtype, field = typed
    proto.dtype = dtype
    dims = proto.tensor_shape.dim
    for size in array.shape:
        dims.add(size=size)
    flat = array.ravel()
    if dtype == types_pb2.DT_HALF:
        flat = flat.astype(np.float16).view(np.uint16)  # native order, then the bit patterns
    getattr(proto, field).extend(flat.tolist())


def to_tensor_proto(array: np.ndarray) -> tensor_pb2.TensorProto:
    """Returns a numpy array (or tf.Tensor value) as a TensorProto.

    Args:
      array: Numeric array, or an object/bytes array for strings.

    Returns:
      The TensorProto.
    """
    array = np.asarray(array)
    dt = _NP_TO_DT.get(array.dtype.newbyteorder("="))
    if dt is not None:
        content = np.ascontiguousarray(array, dtype=_CONTENT_DTYPES[dt]).tobytes()
        proto = tensor_pb2.TensorProto(dtype=dt, tensor_content=content)
        proto.tensor_shape.dim.extend(
            tensor_shape_pb2.TensorShapeProto.Dim(size=s) for s in array.shape
        )
        return proto
    if array.dtype == object or array.dtype.kind in ("S", "U"):
        proto = tensor_pb2.TensorProto(dtype=types_pb2.DT_STRING)
        proto.tensor_shape.dim.extend(
            tensor_shape_pb2.TensorShapeProto.Dim(size=s) for s in array.shape
        )
        proto.string_val.extend(
            v if isinstance(v, bytes) else str(v).encode() for v in array.ravel()
        )
        return proto
    return tf.make_tensor_proto(array)


def string_tensor(values: Sequence[bytes]) -> tensor_pb2.TensorProto:
    """Returns a rank-1 DT_STRING TensorProto, e.g. of serialized tf.Examples."""
    proto = tensor_pb2.TensorProto(dtype=types_pb2.DT_STRING)
    proto.tensor_shape.dim.add(size=len(values))
    proto.string_val.extend(values)
    return proto


def _decode_json_value(value: object, is_string: bool, where: str) -> object:
    if isinstance(value, list):
        return [_decode_json_value(v, is_string, where) for v in value]
    if isinstance(value, dict):
        if set(value) == {"b64"} and isinstance(value["b64"], str):
            try:
                return base64.b64decode(value["b64"], validate=True)
            except ValueError:
                raise InvalidArgumentError(f"{where}: invalid base64 in {{'b64': ...}}") from None
        raise InvalidArgumentError(
            f"{where}: objects other than {{'b64': ...}} are not tensor values"
        )
    if is_string:
        if isinstance(value, str):
            return value.encode("utf-8")
        raise InvalidArgumentError(f"{where}: expected a string, got {json_type(value)}")
    if isinstance(value, str):
        raise InvalidArgumentError(f"{where}: expected a number, got a string")
    return value


def json_type(value: object) -> str:
    """A decoded JSON value's type as TF Serving names it in errors: rapidjson's type names
    (tensorflow_serving/util/json_tensor.cc, JsonTypeString)."""
    if value is None:
        return "Null"
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, dict):
        return "Object"
    if isinstance(value, list):
        return "Array"
    if isinstance(value, str):
        return "String"
    return "Number"


def from_json(value: object, dtype: int, where: str) -> np.ndarray:
    """Converts a REST JSON tensor value into an array of the signature's dtype.

    Args:
      value: Decoded JSON: nested lists of numbers, strings or `{"b64": ...}` objects.
      dtype: DataType enum value of the signature input.
      where: Input description for error messages.

    Returns:
      The array.

    Raises:
      InvalidArgumentError: If the value has the wrong type or is ragged.
    """
    is_string = dtype == types_pb2.DT_STRING
    decoded = _decode_json_value(value, is_string, where)
    try:
        if is_string:
            array = _object_array(decoded)
            if any(not isinstance(v, bytes) for v in array.ravel()):
                raise ValueError("ragged")
            return array
        np_type = tf.dtypes.as_dtype(dtype).as_numpy_dtype
        return np.array(decoded, dtype=np_type)
    except OverflowError:
        raise InvalidArgumentError(
            f"{where}: a number is out of range for {dtype_name(dtype)}"
        ) from None
    except (ValueError, TypeError):
        raise InvalidArgumentError(
            f"{where}: cannot convert the JSON value to {dtype_name(dtype)} "
            "(ragged lists or wrong element types)"
        ) from None


def _object_array(nested: object) -> np.ndarray:
    """Nested lists of bytes as an object array, keeping trailing NUL bytes (no `S` dtype)."""
    shape: list[int] = []
    probe = nested
    while isinstance(probe, list):
        shape.append(len(probe))
        if not probe:
            break
        probe = probe[0]
    flat: list[object] = []

    def walk(value: object, depth: int) -> None:
        if depth == len(shape):
            if isinstance(value, list):
                raise ValueError("ragged")
            flat.append(value)
            return
        if not isinstance(value, list) or len(value) != shape[depth]:
            raise ValueError("ragged")
        for item in value:
            walk(item, depth + 1)

    walk(nested, 0)
    array = np.empty(len(flat), dtype=object)
    for i, value in enumerate(flat):
        array[i] = value
    return array.reshape(shape)


def to_json(array: np.ndarray, name: str) -> object:
    """Converts an output array into REST JSON (strings as text, `*_bytes` outputs as b64).

    Args:
      array: Output value.
      name: Output alias; TF Serving base64-encodes string outputs whose alias ends in `_bytes`.

    Returns:
      Nested lists (or a scalar) of JSON values.
    """
    if array.dtype == object or array.dtype.kind == "S":
        if name.endswith("_bytes"):
            encode = lambda b: {"b64": base64.b64encode(b).decode("ascii")}  # noqa: E731
        else:
            encode = lambda b: b.decode("utf-8", errors="replace")  # noqa: E731
        flat = [encode(b if isinstance(b, bytes) else str(b).encode()) for b in array.ravel()]
        return np.array(flat, dtype=object).reshape(array.shape).tolist()
    return array.tolist()
