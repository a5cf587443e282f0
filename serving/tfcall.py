"""Calls a concrete function with keyword tensors, without TF's per-call argument binding.

`ConcreteFunction.__call__` binds its keyword arguments to the function type on every call
(`inspect` binding, defaults, one type cast and subtype check per input and per captured
variable, a profiler annotation, a gradient-tape check): ~0.1-0.15 ms of Python per request
here, a third of what the whole request handling may cost over the bare call (issue 19).
Signatures take the same tensors every time, so the flat order of the inputs is worked out
once, and each call goes to the function's `AtomicFunction` (the public
`tf.types.experimental.ConcreteFunction.inference_fn`) with those tensors and the captured
variables in that order: what `ConcreteFunction._call_flat` does itself in eager mode when no
gradient tape watches.

`AtomicFunction.call_preflattened` is not part of the exported `tf.types.experimental`
interface (its `call_with_captures` is, but re-binds and re-casts every capture: no faster),
so this module is the one place that relies on it; `tests/serving/test_tfcall.py` pins it on
each supported TensorFlow version. Anything unusual (not eager, another set of inputs, a dtype
or shape the function was not traced for, a function whose inputs are not plain tensors) takes
the ordinary call, which raises TF's own errors.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import tensorflow as tf


class KeywordCall:
    """Calls `fn(**feed)`, through the flat path when `fn` allows it."""

    def __init__(self, fn: tf.types.experimental.ConcreteFunction) -> None:
        """Works out the flat input order of `fn` (None when it has no flat path).

        Args:
          fn: A concrete function whose inputs are keyword-only tensors (signatures, and the
            fused validation functions of `model._fuse`).
        """
        self.fn = fn
        self._order: tuple[str, ...] | None = None
        self._specs: tuple[tf.TensorSpec, ...] = ()
        self._flat: Callable[[Sequence[tf.Tensor]], Any] | None = None
        flat = getattr(fn.inference_fn, "call_preflattened", None)
        order = _flat_order(fn)
        if flat is not None and order is not None:
            specs = fn.structured_input_signature[1]
            self._order = tuple(order)
            self._specs = tuple(specs[name] for name in order)
            self._flat = flat

    @property
    def flat(self) -> bool:
        """True when calls can take the flat path."""
        return self._flat is not None

    def __call__(self, feed: Mapping[str, tf.Tensor]) -> Any:
        """Returns what `fn(**feed)` returns (its errors too)."""
        order, flat = self._order, self._flat
        if flat is None or order is None or len(feed) != len(order) or not tf.executing_eagerly():
            return self.fn(**feed)
        args = []
        for name, spec in zip(order, self._specs, strict=True):
            tensor = feed.get(name)
            if (
                tensor is None
                or tensor.dtype != spec.dtype
                or not spec.shape.is_compatible_with(tensor.shape)
            ):
                return self.fn(**feed)  # TF's own TypeError names what does not fit
            args.append(tensor)
        return flat(args + self.fn.captured_inputs)


def _flat_order(fn: tf.types.experimental.ConcreteFunction) -> list[str] | None:
    """The input names in the order of the flat call, or None if not all plain tensors.

    Asked of the function itself (bind a distinct placeholder to each name, unpack them as a
    call would) rather than assumed: TF sorts keyword-only inputs by name today.
    """
    args, kwargs = fn.structured_input_signature
    if args or not kwargs or not all(type(s) is tf.TensorSpec for s in kwargs.values()):
        return None
    placeholders = {
        name: tf.zeros([0 if d is None else d for d in spec.shape], spec.dtype)
        if spec.shape.rank is not None
        else tf.zeros([0], spec.dtype)
        for name, spec in kwargs.items()
    }
    function_type = fn.function_type
    try:
        flat = function_type.unpack_inputs(function_type.bind(**placeholders))
    except (TypeError, ValueError, AttributeError):
        return None
    by_id = {id(t): name for name, t in placeholders.items()}
    order = [by_id.get(id(t)) for t in flat]
    if len(order) != len(kwargs) or None in order or set(order) != set(kwargs):
        return None
    return order  # type: ignore[return-value]
