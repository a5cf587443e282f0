"""`serving.tfcall`: the flat call of concrete functions, pinned to the supported TF versions."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any
from unittest import mock

import numpy as np
import pytest
import tensorflow as tf

from serving.tfcall import KeywordCall

# The TF versions whose AtomicFunction has the flat path (`call_preflattened`) this module
# relies on: the tfx-1.16 and tfx-1.21 stacks. A new version must be checked, then added.
FLAT_PATH_VERSIONS = ("2.16.", "2.21.")


class _Scaled(tf.Module):
    def __init__(self) -> None:
        super().__init__()
        self.scale = tf.Variable(3.0)
        self.offset = tf.Variable([1.0, 2.0])

    # Inputs whose names do not sort as declared: the flat order is TF's, not ours.
    @tf.function(
        input_signature=[
            tf.TensorSpec([None, 2], tf.float32, name="zeta"),
            tf.TensorSpec([None], tf.string, name="alpha"),
        ]
    )
    def serve(self, zeta: tf.Tensor, alpha: tf.Tensor) -> dict[str, tf.Tensor]:
        return {
            "scaled": zeta * self.scale + self.offset,
            "length": tf.strings.length(alpha),
        }


@pytest.fixture(scope="module")
def signature(tmp_path_factory: pytest.TempPathFactory) -> tf.types.experimental.ConcreteFunction:
    path = os.path.join(tmp_path_factory.mktemp("tfcall"), "model")
    module = _Scaled()
    tf.saved_model.save(module, path, signatures={"serving_default": module.serve})
    return tf.saved_model.load(path).signatures["serving_default"]


def _feed() -> dict[str, tf.Tensor]:
    return {"zeta": tf.constant([[1.0, 2.0], [3.0, 4.0]]), "alpha": tf.constant([b"ab", b"c"])}


def test_the_flat_path_exists_on_the_supported_versions(
    signature: tf.types.experimental.ConcreteFunction,
) -> None:
    if not tf.__version__.startswith(FLAT_PATH_VERSIONS):
        pytest.fail(f"TF {tf.__version__}: check serving/tfcall.py on it, then pin it here")
    assert KeywordCall(signature).flat


def test_the_flat_call_answers_as_the_keyword_call_without_it(
    signature: tf.types.experimental.ConcreteFunction,
) -> None:
    caller = KeywordCall(signature)
    expected = signature(**_feed())
    # The flat path does not go through ConcreteFunction.__call__ at all.
    with mock.patch.object(type(signature), "__call__", side_effect=AssertionError):
        got = caller(_feed())
    assert set(got) == {"scaled", "length"}
    for name in got:
        np.testing.assert_array_equal(got[name].numpy(), expected[name].numpy())


def test_a_fused_function_with_captured_variables_and_a_tuple_output() -> None:
    weight = tf.Variable([2.0])

    @tf.function(autograph=False)
    def fused(**inputs: tf.Tensor) -> tuple[dict[str, tf.Tensor], tf.Tensor]:
        return {"y": inputs["x"] * weight}, tf.strings.length(inputs["b"])

    fn = fused.get_concrete_function(
        b=tf.TensorSpec([None], tf.string, name="b"), x=tf.TensorSpec([None], tf.float32, name="x")
    )
    caller = KeywordCall(fn)
    assert caller.flat
    outputs, lengths = caller({"x": tf.constant([1.0, 4.0]), "b": tf.constant([b"abc", b""])})
    np.testing.assert_array_equal(outputs["y"].numpy(), [2.0, 8.0])
    np.testing.assert_array_equal(lengths.numpy(), [3, 0])
    weight.assign([3.0])  # captured variables are read at each call, not when worked out
    outputs, _ = caller({"x": tf.constant([1.0]), "b": tf.constant([b""])})
    np.testing.assert_array_equal(outputs["y"].numpy(), [3.0])


@pytest.mark.parametrize(
    "feed",
    [
        {"zeta": tf.constant([[1, 2]]), "alpha": tf.constant([b"a"])},  # wrong dtype
        {"zeta": tf.constant([1.0, 2.0]), "alpha": tf.constant([b"a"])},  # other rank
        {"zeta": tf.constant([[1.0, 2.0]])},  # missing input
        {"zeta": tf.constant([[1.0, 2.0]]), "alpha": tf.constant([b"a"]), "x": tf.constant(1)},
    ],
)
def test_inputs_the_function_was_not_traced_for_get_what_the_keyword_call_gives(
    signature: tf.types.experimental.ConcreteFunction, feed: dict[str, tf.Tensor]
) -> None:
    def outcome(call: Callable[[], Any]) -> object:
        try:
            return {k: v.numpy().tolist() for k, v in call().items()}
        except Exception as e:  # the error itself is what is compared
            return type(e), str(e)

    assert outcome(lambda: KeywordCall(signature)(feed)) == outcome(lambda: signature(**feed))


def test_functions_of_other_inputs_take_the_ordinary_call() -> None:
    @tf.function(autograph=False)
    def positional(x: tf.Tensor) -> tf.Tensor:
        return x + 1

    fn = positional.get_concrete_function(tf.TensorSpec([None], tf.int32))
    caller = KeywordCall(fn)
    assert not caller.flat
    np.testing.assert_array_equal(caller({"x": tf.constant([1])}).numpy(), [2])
