"""TFX Trainer entry point (`components.trainer.run.run_fn`), referenced by dotted path."""

import json
import os

import tensorflow as tf
import tensorflow_transform as tft
import tf_keras as keras
from absl import logging
from tfx import v1 as tfx

from components import features
from components.trainer import export, model, strategy
from components.trainer.hyperparameters import Hyperparameters


def _dataset(
    file_patterns: list[str], feature_spec: dict, batch_size: int, seed: int
) -> tf.data.Dataset:
    """Reads Transform's GZIP TFRecords of tf.Examples into (features, label) batches.

    A plain tf.data pipeline rather than `fn_args.data_accessor`: with tfx_bsl's dataset
    factory, `fit` took 36 s for 1000 steps here against 7 s with this one (same data, same
    model, 50 steps per execution).
    """
    files = sorted(f for pattern in file_patterns for f in tf.io.gfile.glob(pattern))
    if not files:
        raise FileNotFoundError(f"No transformed examples match {file_patterns}")

    def parse(serialized: tf.Tensor) -> tuple[dict[str, tf.Tensor], tf.Tensor]:
        parsed = tf.io.parse_example(serialized, feature_spec)
        return parsed, parsed.pop(features.LABEL_KEY)

    return (
        tf.data.TFRecordDataset(files, compression_type="GZIP")
        .shuffle(10_000, seed=seed)
        .repeat()
        .batch(batch_size, drop_remainder=True)
        .map(parse, num_parallel_calls=tf.data.AUTOTUNE)
        .prefetch(tf.data.AUTOTUNE)
    )


def run_fn(fn_args: tfx.components.FnArgs) -> None:
    """Trains the classifier and exports it for serving and evaluation.

    Args:
      fn_args: TFX Trainer arguments (data, transform output, steps, output dirs).
    """
    hparams = Hyperparameters.from_custom_config(fn_args.custom_config)
    keras.utils.set_random_seed(hparams.seed)
    tf_transform_output = tft.TFTransformOutput(fn_args.transform_output)
    spec = features.taxi_features()

    strategy_name = strategy.choose_strategy_name(
        len(tf.config.list_physical_devices("GPU")), os.environ.get("TF_CONFIG")
    )
    logging.info("Training with %s strategy, hyperparameters %s", strategy_name, hparams)
    with strategy.make_strategy(strategy_name).scope():
        classifier = model.build_model(
            spec, hparams.hidden_units, hparams.learning_rate, hparams.steps_per_execution
        )

    feature_spec = tf_transform_output.transformed_feature_spec()
    train = _dataset(fn_args.train_files, feature_spec, hparams.batch_size, hparams.seed)
    evaluation = _dataset(fn_args.eval_files, feature_spec, hparams.batch_size, hparams.seed)
    epochs = max(1, min(hparams.epochs, fn_args.train_steps))
    history = classifier.fit(
        train,
        epochs=epochs,
        steps_per_epoch=max(1, fn_args.train_steps // epochs),
        validation_data=evaluation,
        # eval_steps is the validation budget of the whole run, spread over the epochs.
        validation_steps=max(1, fn_args.eval_steps // epochs),
        callbacks=[
            keras.callbacks.TensorBoard(log_dir=fn_args.model_run_dir, update_freq="epoch"),
            keras.callbacks.EarlyStopping(
                monitor="val_auc",
                mode="max",
                patience=hparams.early_stopping_patience,
                restore_best_weights=True,
            ),
        ],
        verbose=0,
    )
    final = {k: float(v[-1]) for k, v in history.history.items()}
    logging.info("Training finished after %d epochs: %s", len(history.epoch), final)
    with tf.io.gfile.GFile(os.path.join(fn_args.model_run_dir, "training_summary.json"), "w") as f:
        json.dump(
            {
                "strategy": strategy_name,
                "epochs_run": len(history.epoch),
                "final": final,
                "hyperparameters": hparams.to_custom_config()["hyperparameters"],
            },
            f,
            indent=2,
        )
    export.export_model(
        classifier, tf_transform_output, fn_args.serving_model_dir, features.load_schema()
    )
