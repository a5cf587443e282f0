"""TensorProto <-> numpy conversions: the fast decoding paths agree with TensorFlow's own."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2, types_pb2
from tensorflow_serving.apis import predict_pb2

from serving import tensors
from serving.errors import InvalidArgumentError
from serving.model import SignatureInfo, TensorInfo
from serving.service import InferenceService, RequestLimits
from tests.serving.conftest import MODEL, Served

NUMERIC = [
    np.float32,
    np.float64,
    np.int32,
    np.int64,
    np.int8,
    np.uint8,
    np.int16,
    np.bool_,
]


def _values(dtype: type) -> np.ndarray:
    if dtype is np.bool_:
        return np.array([[True, False, True], [False, False, True]])
    info = np.iinfo(dtype) if np.issubdtype(dtype, np.integer) else None
    if info is not None:
        return np.array([[info.min, -1 if info.min < 0 else 0, 1], [2, 3, info.max]], dtype=dtype)
    return np.array([[-1.5, 0.0, np.pi], [1e-30, np.inf, -2.25]], dtype=dtype)


def _proto(dtype: int, shape: list[int], **fields: object) -> tensor_pb2.TensorProto:
    proto = tensor_pb2.TensorProto(dtype=dtype, **fields)  # type: ignore[arg-type]
    for size in shape:
        proto.tensor_shape.dim.add(size=size)
    return proto


@pytest.mark.parametrize("dtype", NUMERIC)
def test_tensor_content_decodes_as_tensorflow_does(dtype: type) -> None:
    array = _values(dtype)
    proto = tensors.to_tensor_proto(array)
    assert proto.tensor_content  # raw bytes, as tf.make_tensor_proto writes (bool aside)
    got = tensors.to_ndarray(proto)
    assert got.dtype == array.dtype and got.shape == array.shape
    np.testing.assert_array_equal(got, tf.make_ndarray(proto))
    np.testing.assert_array_equal(got, array)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32, np.int64, np.int16])
def test_tensor_content_is_little_endian_whatever_the_array_byte_order(dtype: type) -> None:
    array = _values(dtype)
    little = array.astype(np.dtype(dtype).newbyteorder("<"))
    big = array.astype(np.dtype(dtype).newbyteorder(">"))
    from_little, from_big = tensors.to_tensor_proto(little), tensors.to_tensor_proto(big)
    # The same bytes on the wire: little-endian, as TensorFlow writes them.
    assert from_little.tensor_content == from_big.tensor_content == little.tobytes()
    proto = _proto(from_big.dtype, list(array.shape), tensor_content=little.tobytes())
    np.testing.assert_array_equal(tensors.to_ndarray(proto), array)


@pytest.mark.parametrize("dtype", NUMERIC)
def test_malformed_tensor_content_length_is_invalid_argument(dtype: type) -> None:
    array = _values(dtype)
    good = tensors.to_tensor_proto(array)
    for content in (good.tensor_content[:-1], good.tensor_content + b"\x00"):
        proto = _proto(good.dtype, list(array.shape), tensor_content=content)
        with pytest.raises(InvalidArgumentError, match="values do not match shape"):
            tensors.to_ndarray(proto)
        # What a request gets: the error names the input, before anything is decoded.
        info = SignatureInfo(
            "serving_default",
            "tensorflow/serving/predict",
            {"x": TensorInfo(good.dtype, (-1, 3))},
            {},
            True,
        )
        build = InferenceService.proto_inputs({"x": proto}, RequestLimits())
        with pytest.raises(InvalidArgumentError, match="Input 'x': tensor_content of"):
            build(info)


@pytest.mark.parametrize(
    ("dtype", "field"),
    [
        (types_pb2.DT_FLOAT, "float_val"),
        (types_pb2.DT_DOUBLE, "double_val"),
        (types_pb2.DT_INT32, "int_val"),
        (types_pb2.DT_INT64, "int64_val"),
        (types_pb2.DT_BOOL, "bool_val"),
        (types_pb2.DT_INT8, "int_val"),
        (types_pb2.DT_INT16, "int_val"),
        (types_pb2.DT_UINT8, "int_val"),
        (types_pb2.DT_HALF, "half_val"),
    ],
)
def test_typed_fields_decode_as_tensorflow_does(dtype: int, field: str) -> None:
    numpy_type = tf.dtypes.as_dtype(dtype).as_numpy_dtype
    values = (
        [True, False, True, True, False, True]
        if dtype == types_pb2.DT_BOOL
        else [np.array(v).astype(numpy_type).item() for v in (1, -2, 3, 0, 5, 7)]
    )
    if dtype == types_pb2.DT_HALF:
        values = np.array(values, np.float16).view(np.uint16).tolist()
    elif dtype == types_pb2.DT_UINT8:
        values = [abs(v) for v in values]
    cases = [
        _proto(dtype, [2, 3], **{field: values}),  # one value per element
        _proto(dtype, [2, 3], **{field: values[:1]}),  # one value for all
        _proto(dtype, [], **{field: values[:1]}),  # a scalar
    ]
    for proto in cases:
        got, expected = tensors.to_ndarray(proto), tf.make_ndarray(proto)
        assert got.dtype == expected.dtype and got.shape == expected.shape
        np.testing.assert_array_equal(got, expected)


def test_strings_keep_their_bytes() -> None:
    values = [b"a\x00", b"", b"\x00\xff", b"abc"]
    proto = _proto(types_pb2.DT_STRING, [2, 2], string_val=values)
    got = tensors.to_ndarray(proto)
    assert got.dtype == object and got.shape == (2, 2)
    assert got.ravel().tolist() == values
    one = tensors.to_ndarray(_proto(types_pb2.DT_STRING, [3], string_val=[b"x\x00"]))
    assert one.tolist() == [b"x\x00"] * 3
    with pytest.raises(InvalidArgumentError):
        tensors.to_ndarray(_proto(types_pb2.DT_STRING, [3], string_val=values[:2]))


@pytest.mark.parametrize("dtype", [*NUMERIC, np.float16, np.uint16, np.uint32, np.uint64])
def test_responses_use_the_typed_field_as_tf_serving_does(dtype: type) -> None:
    # Tensor::AsProtoField, TF Serving's default for PredictResponse outputs.
    array = _values(dtype) if dtype in NUMERIC else np.arange(6, dtype=dtype).reshape(2, 3)
    proto = tensors.to_response_proto(array)
    assert not proto.tensor_content
    assert proto.dtype == tf.dtypes.as_dtype(dtype).as_datatype_enum
    assert [d.size for d in proto.tensor_shape.dim] == [2, 3]
    field = {
        np.float32: "float_val",
        np.float64: "double_val",
        np.int32: "int_val",
        np.int64: "int64_val",
        np.int8: "int_val",
        np.uint8: "int_val",
        np.int16: "int_val",
        np.bool_: "bool_val",
        np.float16: "half_val",
        np.uint16: "int_val",
        np.uint32: "uint32_val",
        np.uint64: "uint64_val",
    }[dtype]
    assert len(getattr(proto, field)) == array.size
    np.testing.assert_array_equal(tf.make_ndarray(proto), array)
    np.testing.assert_array_equal(tensors.to_ndarray(proto), array)
    strings = tensors.to_response_proto(np.array([b"a\x00", b"b"], dtype=object))
    assert list(strings.string_val) == [b"a\x00", b"b"]


def test_predict_answers_with_typed_fields(
    serve_model: Callable[..., Served], examples: list[bytes]
) -> None:
    served = serve_model()
    request = predict_pb2.PredictRequest()
    request.model_spec.name = MODEL
    request.inputs["examples"].CopyFrom(tensors.string_tensor(examples))
    response = served.server.service.predict(request)
    output = response.outputs["probabilities"]
    assert output.dtype == types_pb2.DT_FLOAT and not output.tensor_content
    assert len(output.float_val) == len(examples)
    assert tf.make_ndarray(output).shape == (len(examples), 1)
