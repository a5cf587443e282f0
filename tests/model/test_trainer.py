"""Model build, one training step on tiny data, strategy choice and hyperparameters."""

import json

import numpy as np
import pytest
import tensorflow as tf

from model import features
from model.trainer import model, strategy
from model.trainer.hyperparameters import Hyperparameters


def _tiny_batch(spec: features.FeatureSpec, n: int = 8) -> tuple[dict, np.ndarray]:
    rng = np.random.default_rng(0)
    batch = {}
    for key in spec.by_role["zscore"]:
        batch[features.transformed_name(key)] = rng.normal(size=n).astype("float32")
    for role in ("bucketize", "vocab", "categorical_int"):
        for key in spec.by_role[role]:
            width = model.categorical_width(spec, key)
            batch[features.transformed_name(key)] = rng.integers(0, width, size=n).astype("int64")
    labels = (batch["fare_xf"] > 0).astype("int64")
    return batch, labels


def test_default_model_is_dense64_relu_then_sigmoid_and_one_step_lowers_loss() -> None:
    spec = features.taxi_features()
    tf.keras.utils.set_random_seed(1)
    classifier = model.build_model(spec, hidden_units=(64,), learning_rate=0.05)
    dense = [layer for layer in classifier.layers if layer.__class__.__name__ == "Dense"]
    assert [(d.units, d.activation.__name__) for d in dense] == [(64, "relu"), (1, "sigmoid")]
    x, y = _tiny_batch(spec)
    before = classifier.evaluate(x, y, verbose=0)[0]
    classifier.train_on_batch(x, y)
    after = classifier.evaluate(x, y, verbose=0)[0]
    assert after < before
    scores = classifier.predict(x, verbose=0)
    assert scores.shape == (8, 1) and np.all((scores >= 0) & (scores <= 1))


def test_model_inputs_never_include_the_label_or_its_source() -> None:
    classifier = model.build_model(features.taxi_features())
    assert "tips_xf" not in classifier.input_names
    assert features.LABEL_KEY not in classifier.input_names


@pytest.mark.parametrize(
    ("gpus", "tf_config", "expected"),
    [
        (0, None, strategy.DEFAULT),
        (1, None, strategy.MIRRORED),
        (4, "", strategy.MIRRORED),
        (
            0,
            json.dumps({"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 0}}),
            strategy.DEFAULT,
        ),
        (
            2,
            json.dumps({"cluster": {"chief": ["c:1"], "worker": ["a:1"]}}),
            strategy.MULTI_WORKER_MIRRORED,
        ),
        (0, json.dumps({"cluster": {"worker": ["a:1", "b:1"]}}), strategy.MULTI_WORKER_MIRRORED),
    ],
)
def test_strategy_follows_devices_and_cluster(
    gpus: int, tf_config: str | None, expected: str
) -> None:
    assert strategy.choose_strategy_name(gpus, tf_config) == expected


def test_strategy_rejects_malformed_tf_config() -> None:
    with pytest.raises(ValueError, match="TF_CONFIG is not a JSON object"):
        strategy.choose_strategy_name(0, "not json")


def test_default_strategy_builds_on_cpu() -> None:
    assert strategy.make_strategy(strategy.DEFAULT).num_replicas_in_sync == 1


def test_hyperparameters_round_trip_and_validate() -> None:
    hp = Hyperparameters(hidden_units=(32, 16), learning_rate=0.01, seed=7)
    assert Hyperparameters.from_custom_config(json.loads(json.dumps(hp.to_custom_config()))) == hp
    with pytest.raises(ValueError, match="hidden_units"):
        Hyperparameters(hidden_units=())
    with pytest.raises(ValueError, match="learning_rate"):
        Hyperparameters(learning_rate=2.0)


def test_train_epochs_turn_the_row_count_into_steps(tmp_path) -> None:
    from tfx import v1 as tfx

    from model.trainer import run

    for shard, rows in enumerate((70, 30)):
        path = str(tmp_path / f"part-{shard}.gz")
        with tf.io.TFRecordWriter(path, options="GZIP") as writer:
            for _ in range(rows):
                writer.write(tf.train.Example().SerializeToString())
    fn_args = tfx.components.FnArgs(train_files=[str(tmp_path / "*.gz")], train_steps=1000)
    assert run.count_records(fn_args.train_files) == 100
    fixed = Hyperparameters(batch_size=40)
    assert run.training_steps(fn_args, fixed) == 1000
    # ceil(100 rows x 3 epochs / 40) = 8 steps, whatever train_steps says.
    assert run.training_steps(fn_args, Hyperparameters(batch_size=40, train_epochs=3)) == 8
    assert "train_epochs" not in fixed.to_custom_config()["hyperparameters"]
    assert Hyperparameters.from_custom_config(
        Hyperparameters(train_epochs=2).to_custom_config()
    ) == Hyperparameters(train_epochs=2)


@pytest.mark.parametrize(
    ("tf_config", "chief"),
    [
        (None, True),
        ({"cluster": {"chief": ["c:1"], "worker": ["w:1"]}, "task": {"type": "chief"}}, True),
        ({"cluster": {"chief": ["c:1"], "worker": ["w:1"]}, "task": {"type": "worker"}}, False),
        ({"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": 0}}, True),
        ({"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": 1}}, False),
    ],
)
def test_only_the_chief_exports(tf_config, chief) -> None:
    assert strategy.is_chief(json.dumps(tf_config) if tf_config else None) is chief


def test_warmup_examples_hold_the_curated_schema_in_the_serving_environment() -> None:
    import schemas
    from model import features
    from model.trainer import export
    from serving import schema as serving_schema
    from serving.errors import ServingError
    from serving.validation import ExampleValidator

    examples = export.warmup_examples(features.load_schema(), count=5)
    # The check a validating server runs on every request, warm-up replay included.
    validator = ExampleValidator(serving_schema.load_features(schemas.schema_path(), "SERVING"))
    try:
        validator.check(np.array(examples, dtype=object), "inputs")
    except ServingError as e:  # pragma: no cover - the failure message is the point
        pytest.fail(f"warm-up examples break the curated schema: {e}")
