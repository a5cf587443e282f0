"""The serialized tf.Examples a TF Serving `Input` carries, as TF Serving feeds them to a model.

Standard library only: the messages are passed in (a `tensorflow.serving.Input`, parsed
`tf.train.Example`s), so the server, its REST codec and the monitor reading logged requests
share one reading of a request's examples without this contract importing TensorFlow.
"""

from collections.abc import Iterable


def with_context(context: bytes, examples: Iterable[bytes]) -> list[bytes]:
    """Each serialized example preceded by the serialized context.

    tensorflow_serving/servables/tensorflow/util.cc (InputToSerializedExampleTensor) feeds
    `StrCat(context, example)` for `example_list_with_context`: parsing the concatenation
    merges the two messages, and an example's own feature replaces the context's of the same
    name (a map entry read later replaces an earlier one).
    """
    return [context + example for example in examples]


def input_examples(model_input: object) -> list[bytes]:
    """The serialized examples of a `tensorflow.serving.Input` ([] when it holds none).

    Args:
      model_input: An `Input` proto: `example_list` or `example_list_with_context`.
    """
    kind = model_input.WhichOneof("kind")  # type: ignore[attr-defined]
    if kind == "example_list":
        examples = model_input.example_list.examples  # type: ignore[attr-defined]
        return [e.SerializeToString() for e in examples]
    if kind == "example_list_with_context":
        lists = model_input.example_list_with_context  # type: ignore[attr-defined]
        return with_context(
            lists.context.SerializeToString(), (e.SerializeToString() for e in lists.examples)
        )
    return []
