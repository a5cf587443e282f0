"""Tiny scored taxi trips for model-agnostic TFMA runs: labels, slicing features and two scores."""

import numpy as np
import tensorflow as tf
import tensorflow_model_analysis as tfma
from tensorflow_model_analysis.proto import config_pb2

from model import features
from pipeline.config import EvaluationSettings
from pipeline.evaluation import build_eval_config

# Score = 0.25 + signal x label + noise: the candidate separates big tippers better.
CANDIDATE_SIGNAL, BASELINE_SIGNAL = 0.5, 0.2


def write_scored_examples(
    path: str,
    count: int,
    *,
    seed: int,
    companies: tuple[str, ...],
    noise: tuple[float, float],
    fare: bool = False,
) -> None:
    """Writes `count` tf.Examples with a label, payment type, company, hour and two scores.

    Args:
      path: TFRecord file to write (uncompressed).
      count: How many examples.
      seed: The random generator's seed (labels, fares, score noise).
      companies: Cycled through by example; "" leaves that example's company missing.
      noise: Standard deviation of the candidate's and the baseline's score noise.
      fare: Also write a `fare` feature (one that slicing never reads).
    """
    rng = np.random.default_rng(seed)
    scores = (
        ("p_candidate", CANDIDATE_SIGNAL, noise[0]),
        ("p_baseline", BASELINE_SIGNAL, noise[1]),
    )
    with tf.io.TFRecordWriter(path) as writer:
        for i in range(count):
            card = i % 3 != 0
            label = int(card and rng.random() < 0.6)
            example = tf.train.Example()
            feature = example.features.feature
            feature[features.LABEL_KEY].int64_list.value.append(label)
            feature["payment_type"].bytes_list.value.append(b"Credit Card" if card else b"Cash")
            company = companies[i % len(companies)]
            if company:
                feature["company"].bytes_list.value.append(company.encode())
            feature["trip_start_hour"].int64_list.value.append(i % 24)
            if fare:
                feature["fare"].float_list.value.append(float(rng.uniform(3, 40)))
            for name, signal, sigma in scores:
                score = np.clip(0.25 + signal * label + rng.normal(0, sigma), 0.001, 0.999)
                feature[name].float_list.value.append(float(score))
            writer.write(example.SerializeToString())


def scored_eval_config() -> config_pb2.EvalConfig:
    """The project's EvalConfig reading each model's score from the examples (no model).

    The candidate's score is `p_candidate`, the baseline's `p_baseline` (as
    `write_scored_examples` writes them). The Credit Card AUC bar is one the tiny data cannot
    reach, so a verdict has a threshold failure to report.
    """
    config = build_eval_config(
        EvaluationSettings(min_auc=0.7, min_auc_credit_card=0.99, max_auc_drop=0.0)
    )
    specs = [
        config_pb2.ModelSpec(
            name=spec.name,
            is_baseline=spec.is_baseline,
            label_key=spec.label_key,
            prediction_key="p_baseline" if spec.is_baseline else "p_candidate",
        )
        for spec in config.model_specs
    ]
    del config.model_specs[:]
    config.model_specs.extend(specs)
    return config


def model_agnostic_run_config(
    config: config_pb2.EvalConfig, *, has_baseline: bool
) -> config_pb2.EvalConfig:
    """The config TFMA's model-agnostic `run_model_analysis` can run.

    Without a baseline, TFX's Evaluator drops its spec and every change threshold ("rubber
    stamp"). With one, a model-agnostic run cannot judge change thresholds (it sees no
    baseline *model*), so they go; the diff metrics stay.
    """
    run_config = tfma.utils.update_eval_config_with_defaults(
        config, has_baseline=has_baseline, rubber_stamp=True
    )
    for metrics_spec in run_config.metrics_specs:
        for metric in metrics_spec.metrics:
            for per_slice in metric.per_slice_thresholds:
                per_slice.threshold.ClearField("change_threshold")
    return run_config
