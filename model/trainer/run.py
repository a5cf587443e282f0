"""TFX Trainer entry point (`model.trainer.run.run_fn`), referenced by dotted path."""

import json
import math
import os
import shutil
import tempfile

import tensorflow as tf
import tensorflow_transform as tft
import tf_keras as keras
from absl import logging
from tfx import v1 as tfx

from model import features
from model.trainer import export, model, strategy
from model.trainer.hyperparameters import Hyperparameters


def _files(file_patterns: list[str]) -> list[str]:
    files = sorted(f for pattern in file_patterns for f in tf.io.gfile.glob(pattern))
    if not files:
        raise FileNotFoundError(f"No examples match {file_patterns}")
    return files


def _records(files: list[str]) -> tf.data.Dataset:
    """The files' serialized records, read several files at a time (shards of a split)."""
    return tf.data.Dataset.from_tensor_slices(files).interleave(
        lambda path: tf.data.TFRecordDataset(path, compression_type="GZIP"),
        cycle_length=min(len(files), 8),
        num_parallel_calls=tf.data.AUTOTUNE,
    )


def _dataset(
    file_patterns: list[str],
    tf_transform_output: tft.TFTransformOutput,
    batch_size: int,
    seed: int,
    workers: int = 1,
) -> tf.data.Dataset:
    """Reads ExampleGen's GZIP TFRecords of raw tf.Examples into transformed (features, label)
    batches.

    The transform graph is applied here, batch by batch, as the exported model applies it to
    served requests (`export.build_signatures`), so Transform need not materialize every row of
    both splits when training reads only steps x batch of them. A plain tf.data pipeline rather
    than `fn_args.data_accessor`: with tfx_bsl's dataset factory, `fit` took 36 s for 1000
    steps here against 7 s with this one (same data, same model, 50 steps per execution).
    Files are read in parallel (interleave), batches parsed and transformed in parallel and
    prefetched. Under MultiWorkerMirroredStrategy Keras shards it per worker: by file when
    every worker gets one, else by record (with fewer files than workers, file sharding would
    leave a worker without data).
    """
    files = _files(file_patterns)
    raw_spec = tf_transform_output.raw_feature_spec()
    transform_layer = tf_transform_output.transform_features_layer()

    def parse(serialized: tf.Tensor) -> tuple[dict[str, tf.Tensor], tf.Tensor]:
        transformed = dict(transform_layer(tf.io.parse_example(serialized, raw_spec)))
        return transformed, transformed.pop(features.LABEL_KEY)

    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = (
        tf.data.experimental.AutoShardPolicy.FILE
        if len(files) >= workers
        else tf.data.experimental.AutoShardPolicy.DATA
    )
    return (
        _records(files)
        .with_options(options)
        .shuffle(10_000, seed=seed)
        .repeat()
        .batch(batch_size, drop_remainder=True)
        .map(parse, num_parallel_calls=tf.data.AUTOTUNE)
        .prefetch(tf.data.AUTOTUNE)
    )


def count_records(file_patterns: list[str]) -> int:
    """Counts the examples in the files (one parallel read pass, no parsing)."""
    return int(_records(_files(file_patterns)).reduce(tf.constant(0, tf.int64), lambda n, _: n + 1))


def training_steps(fn_args: tfx.components.FnArgs, hparams: Hyperparameters) -> int:
    """Training steps: the Trainer's fixed `train_steps`, or enough for `train_epochs` passes.

    TFX's TrainArgs needs a step count when the pipeline is built, but the row count is only
    known once the data is prepared (and on Kubeflow the compiler never sees the data), so
    with `train_epochs` set the steps are computed here from the rows ExampleGen wrote for
    training (the same rows DataPrep records as `train_rows` on its artifact, which the
    Trainer's inputs do not carry).

    Args:
      fn_args: TFX Trainer arguments.
      hparams: Hyperparameters.

    Returns:
      At least one step.
    """
    if hparams.train_epochs is None:
        return int(fn_args.train_steps)
    rows = count_records(fn_args.train_files)
    steps = max(1, math.ceil(rows * hparams.train_epochs / hparams.batch_size))
    logging.info(
        "%d training rows x %d epochs / batch %d: %d steps (train_steps %s ignored)",
        rows,
        hparams.train_epochs,
        hparams.batch_size,
        steps,
        fn_args.train_steps,
    )
    return steps


def run_fn(fn_args: tfx.components.FnArgs) -> None:
    """Trains the classifier and exports it for serving and evaluation.

    Args:
      fn_args: TFX Trainer arguments (data, transform output, steps, output dirs).
    """
    hparams = Hyperparameters.from_custom_config(fn_args.custom_config)
    keras.utils.set_random_seed(hparams.seed)
    tf_transform_output = tft.TFTransformOutput(fn_args.transform_output)
    spec = features.taxi_features()

    tf_config = os.environ.get("TF_CONFIG")
    strategy_name = strategy.choose_strategy_name(
        len(tf.config.list_physical_devices("GPU")), tf_config
    )
    chief = strategy.is_chief(tf_config)
    logging.info("Training with %s strategy, hyperparameters %s", strategy_name, hparams)
    with strategy.make_strategy(strategy_name).scope():
        classifier = model.build_model(
            spec, hparams.hidden_units, hparams.learning_rate, hparams.steps_per_execution
        )

    workers = strategy.cluster_size(tf_config)
    train = _dataset(
        fn_args.train_files, tf_transform_output, hparams.batch_size, hparams.seed, workers
    )
    evaluation = _dataset(
        fn_args.eval_files, tf_transform_output, hparams.batch_size, hparams.seed, workers
    )
    train_steps = training_steps(fn_args, hparams)
    # Under MultiWorkerMirroredStrategy every worker runs this function and must take part in
    # saving (saving runs collective ops), but only the chief may write the outputs: the
    # others write to a scratch directory that is deleted (TFX's Trainer executor leaves
    # exporting "only once" to run_fn, tfx/components/trainer/executor.py).
    scratch = "" if chief else tempfile.mkdtemp(prefix="trainer-worker-")
    run_dir = fn_args.model_run_dir if chief else os.path.join(scratch, "run")
    export_dir = fn_args.serving_model_dir if chief else os.path.join(scratch, "export")
    epochs = max(1, min(hparams.epochs, train_steps))
    history = classifier.fit(
        train,
        epochs=epochs,
        steps_per_epoch=max(1, train_steps // epochs),
        validation_data=evaluation,
        # eval_steps is the validation budget of the whole run, spread over the epochs.
        validation_steps=max(1, fn_args.eval_steps // epochs),
        callbacks=[
            keras.callbacks.TensorBoard(log_dir=run_dir, update_freq="epoch"),
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
    tf.io.gfile.makedirs(run_dir)
    with tf.io.gfile.GFile(os.path.join(run_dir, "training_summary.json"), "w") as f:
        json.dump(
            {
                "strategy": strategy_name,
                "replicas": classifier.distribute_strategy.num_replicas_in_sync,
                "train_steps": train_steps,
                "epochs_run": len(history.epoch),
                "final": final,
                "hyperparameters": hparams.to_custom_config()["hyperparameters"],
            },
            f,
            indent=2,
        )
    export.export_model(classifier, tf_transform_output, export_dir, features.load_schema())
    if scratch:
        shutil.rmtree(scratch, ignore_errors=True)
    logging.info("%s: model %s", "chief" if chief else "worker", export_dir)
