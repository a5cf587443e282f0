"""A request's examples as TF Serving feeds them: the context merged in, the example winning."""

import tensorflow as tf
from tensorflow_serving.apis import input_pb2

from model_contract.serving_input import input_examples, with_context


def _example(**features: float | bytes) -> tf.train.Example:
    example = tf.train.Example()
    for name, value in features.items():
        feature = example.features.feature[name]
        if isinstance(value, bytes):
            feature.bytes_list.value.append(value)
        else:
            feature.float_list.value.append(value)
    return example


def _features(serialized: bytes) -> dict[str, object]:
    feature = tf.train.Example.FromString(serialized).features.feature
    return {
        name: (list(f.bytes_list.value) or list(f.float_list.value)) for name, f in feature.items()
    }


def test_context_features_reach_every_example_and_an_examples_own_feature_wins() -> None:
    model_input = input_pb2.Input()
    lists = model_input.example_list_with_context
    lists.context.CopyFrom(_example(company=b"Flash Cab", fare=1.0))
    lists.examples.add().CopyFrom(_example(fare=7.5, trip_miles=2.0))
    lists.examples.add().CopyFrom(_example(trip_miles=0.5))

    merged = [_features(s) for s in input_examples(model_input)]

    assert merged == [
        {"company": [b"Flash Cab"], "fare": [7.5], "trip_miles": [2.0]},
        {"company": [b"Flash Cab"], "fare": [1.0], "trip_miles": [0.5]},
    ]
    # The parsers the model and the schema check use read the concatenation the same way.
    parsed = tf.io.parse_example(
        input_examples(model_input), {"fare": tf.io.FixedLenFeature([], tf.float32)}
    )
    assert parsed["fare"].numpy().tolist() == [7.5, 1.0]


def test_an_example_list_is_passed_as_is_and_an_empty_input_has_no_examples() -> None:
    model_input = input_pb2.Input()
    model_input.example_list.examples.add().CopyFrom(_example(fare=3.0))
    assert input_examples(model_input) == [_example(fare=3.0).SerializeToString()]
    assert input_examples(input_pb2.Input()) == []
    assert with_context(b"", [b"x"]) == [b"x"]
