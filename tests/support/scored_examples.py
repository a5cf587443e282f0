"""Tiny scored taxi trips for model-agnostic TFMA runs: labels, slicing features and two scores."""

import numpy as np
import tensorflow as tf

from model import features

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
