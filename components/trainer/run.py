"""TFX Trainer entry point (`components.trainer.run.run_fn`), referenced by dotted path."""

import json
import os

import tensorflow as tf
import tensorflow_transform as tft
import tf_keras as keras
from absl import logging
from tfx import v1 as tfx
from tfx_bsl.public import tfxio

from components import features
from components.trainer import export, model, strategy
from components.trainer.hyperparameters import Hyperparameters


def _dataset(
    fn_args: tfx.components.FnArgs,
    file_pattern: list[str],
    tf_transform_output: tft.TFTransformOutput,
    batch_size: int,
    seed: int,
) -> tf.data.Dataset:
    return fn_args.data_accessor.tf_dataset_factory(
        file_pattern,
        tfxio.TensorFlowDatasetOptions(
            batch_size=batch_size, label_key=features.LABEL_KEY, shuffle_seed=seed
        ),
        tf_transform_output.transformed_metadata.schema,
    ).repeat()


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

    train = _dataset(
        fn_args, fn_args.train_files, tf_transform_output, hparams.batch_size, hparams.seed
    )
    evaluation = _dataset(
        fn_args, fn_args.eval_files, tf_transform_output, hparams.batch_size, hparams.seed
    )
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
