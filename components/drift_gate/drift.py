"""The comparison: TFDV's drift comparators, a scale-sensitive distance and presence floors,
per feature, as plain records.

No TFX and no ML-Metadata here: the DriftGate executor, the monitor, `bench/drift_thresholds.py`
and the tests all call `compare_statistics` on two `DatasetFeatureStatisticsList` protos.
"""

import dataclasses
import math
import re

import numpy as np
import tensorflow_data_validation as tfdv
from tensorflow_metadata.proto.v0 import anomalies_pb2, schema_pb2, statistics_pb2

from components.reports import markdown

L_INFINITY = "L-infinity distance"
JENSEN_SHANNON = "Jensen-Shannon divergence"
PRESENCE = "fraction present"
WASSERSTEIN = "Wasserstein distance / IQR"
# The threshold of WASSERSTEIN, as an annotation tag of the feature in the curated schema
# (`tag: "drift:wasserstein_iqr<=0.25"`): TFDV's FeatureComparator has no scale-sensitive
# numeric measure, and the schema stays the one place thresholds live.
WASSERSTEIN_TAG = "drift:wasserstein_iqr<="
# Quantile levels compared: the 10th to the 90th percentile. StatisticsGen's QUANTILES
# histogram has TFDV's default 10 equal-mass buckets, so these are its inner boundaries (its
# outer ones are the minimum and maximum, which one outlier trip decides).
QUANTILE_RANGE = (0.1, 0.9)
_GRID_POINTS = 81
TRAINING_ENVIRONMENT = "TRAINING"
# StatisticsGen's histograms: TFDV's Jensen-Shannon divergence compares equal-width histograms
# over [min, max]; with TFDV's default 10 buckets one outlier trip (1,710 miles) puts 99.9% of
# the rows in the first bucket and two random halves of the sample differ by 0.7. With 100
# buckets a resample stays under 0.4 and a unit change gives 0.88-0.95 (bench/drift_thresholds.py).
HISTOGRAM_BUCKETS = 100


def stats_options(schema: schema_pb2.Schema | None = None) -> tfdv.StatsOptions:
    """The statistics options of the pipeline's StatisticsGen (and of the bench)."""
    return tfdv.StatsOptions(schema=schema, num_histogram_buckets=HISTOGRAM_BUCKETS)


_MEASURE_NAMES = {
    anomalies_pb2.DriftSkewInfo.Measurement.L_INFTY: L_INFINITY,
    anomalies_pb2.DriftSkewInfo.Measurement.JENSEN_SHANNON_DIVERGENCE: JENSEN_SHANNON,
}


@dataclasses.dataclass(frozen=True)
class FeatureCheck:
    """One measure of one feature against its threshold.

    Attributes:
      feature: Feature name.
      measure: `L-infinity distance`, `Jensen-Shannon divergence` or `Wasserstein distance /
        IQR` (new data vs the served model's training data; a stop when above the threshold)
        or `fraction present` (share of new rows with a value; a stop when below the
        threshold).
      value: The measured value.
      threshold: The curated schema's threshold for it.
      baseline: For `fraction present`, the fraction in the served model's training data.
    """

    feature: str
    measure: str
    value: float
    threshold: float
    baseline: float | None = None

    @property
    def passed(self) -> bool:
        """Whether the value is on the right side of the threshold."""
        if self.measure == PRESENCE:
            return self.value >= self.threshold
        return self.value <= self.threshold

    def describe(self) -> str:
        """`feature 'fare': Jensen-Shannon divergence 0.91 > threshold 0.5`."""
        if self.measure == PRESENCE:
            relation = ">=" if self.passed else "<"
        else:
            relation = "<=" if self.passed else ">"
        text = f"{self.measure} {self.value:.4g} {relation} threshold {self.threshold:g}"
        if self.baseline is not None:
            text += f" (served model's data: {self.baseline:.4g})"
        return f"feature {self.feature!r}: {text}"


def wasserstein_threshold(feature: schema_pb2.Feature) -> float | None:
    """The feature's `drift:wasserstein_iqr<=X` annotation threshold, or None without one.

    Raises:
      ValueError: If the tag is there but X is not a non-negative number, or it appears twice.
    """
    tags = [t for t in feature.annotation.tag if t.startswith(WASSERSTEIN_TAG)]
    if not tags:
        return None
    text = tags[0][len(WASSERSTEIN_TAG) :]
    if len(tags) > 1 or not re.fullmatch(r"[0-9]+(\.[0-9]*)?", text.strip()):
        raise ValueError(
            f"Feature {feature.name!r} must carry at most one annotation tag "
            f"'{WASSERSTEIN_TAG}<non-negative number>', got {tags}"
        )
    return float(text)


def set_thresholds(
    schema: schema_pb2.Schema,
    *,
    l_infinity: dict[str, float],
    jensen_shannon: dict[str, float],
    wasserstein: dict[str, float] | None = None,
) -> schema_pb2.Schema:
    """Returns a copy of `schema` whose drift comparators are the given thresholds (bench, tests).

    Args:
      schema: A schema.
      l_infinity: Feature -> L-infinity threshold.
      jensen_shannon: Feature -> Jensen-Shannon threshold.
      wasserstein: Feature -> `Wasserstein distance / IQR` threshold (its annotation tag).

    Returns:
      The copy; features not named keep their comparators.

    Raises:
      KeyError: If a named feature is not in the schema.
    """
    result = schema_pb2.Schema()
    result.CopyFrom(schema)
    by_name = {f.name: f for f in result.feature}
    for name, threshold in l_infinity.items():
        by_name[name].drift_comparator.Clear()
        by_name[name].drift_comparator.infinity_norm.threshold = threshold
    for name, threshold in jensen_shannon.items():
        by_name[name].drift_comparator.Clear()
        by_name[name].drift_comparator.jensen_shannon_divergence.threshold = threshold
    for name, threshold in (wasserstein or {}).items():
        tags = by_name[name].annotation.tag
        kept = [t for t in tags if not t.startswith(WASSERSTEIN_TAG)]
        del tags[:]
        tags.extend([*kept, f"{WASSERSTEIN_TAG}{threshold:g}"])
    return result


def thresholds(schema: schema_pb2.Schema) -> dict[tuple[str, str], float]:
    """(feature, measure) -> the schema's threshold, for every comparator and presence floor."""
    found = {}
    for feature in schema.feature:
        comparator = feature.drift_comparator
        if comparator.HasField("infinity_norm"):
            found[(feature.name, L_INFINITY)] = comparator.infinity_norm.threshold
        if comparator.HasField("jensen_shannon_divergence"):
            found[(feature.name, JENSEN_SHANNON)] = comparator.jensen_shannon_divergence.threshold
        if feature.presence.min_fraction > 0:
            found[(feature.name, PRESENCE)] = feature.presence.min_fraction
        wasserstein = wasserstein_threshold(feature)
        if wasserstein is not None:
            found[(feature.name, WASSERSTEIN)] = wasserstein
    return found


def _common_stats(
    feature: statistics_pb2.FeatureNameStatistics,
) -> statistics_pb2.CommonStatistics:
    kind = feature.WhichOneof("stats")
    if kind is None:
        return statistics_pb2.CommonStatistics()
    return getattr(feature, kind).common_stats


def fraction_present(statistics: statistics_pb2.DatasetFeatureStatisticsList) -> dict[str, float]:
    """Feature -> share of examples with at least one value (features absent from the data: none).

    Args:
      statistics: Statistics of one split (the first data set is read).

    Returns:
      Fractions in [0, 1] for every feature the statistics hold.
    """
    dataset = statistics.datasets[0]
    if dataset.num_examples == 0:
        return {}
    result = {}
    for feature in dataset.features:
        name = feature.path.step[0] if feature.path.step else feature.name
        result[name] = _common_stats(feature).num_non_missing / dataset.num_examples
    return result


def presence_checks(
    current: statistics_pb2.DatasetFeatureStatisticsList,
    schema: schema_pb2.Schema,
    baseline: statistics_pb2.DatasetFeatureStatisticsList | None = None,
) -> list[FeatureCheck]:
    """Checks each feature with a `presence.min_fraction` floor (a vanished column has 0).

    Args:
      current: Statistics of the new training data.
      schema: The curated schema.
      baseline: Statistics of the served model's training data, for the report (optional).

    Returns:
      One `fraction present` check per floored training feature.
    """
    present_now = fraction_present(current)
    present_before = fraction_present(baseline) if baseline is not None else {}
    return [
        FeatureCheck(
            feature=feature.name,
            measure=PRESENCE,
            value=present_now.get(feature.name, 0.0),
            threshold=feature.presence.min_fraction,
            baseline=present_before.get(feature.name),
        )
        for feature in schema.feature
        if feature.presence.min_fraction > 0
        and TRAINING_ENVIRONMENT not in feature.not_in_environment
    ]


def drift_checks(
    current: statistics_pb2.DatasetFeatureStatisticsList,
    baseline: statistics_pb2.DatasetFeatureStatisticsList,
    schema: schema_pb2.Schema,
) -> list[FeatureCheck]:
    """Measures each feature with a drift comparator, with TFDV's own comparators.

    `validate_statistics` with `previous_statistics` reports one measurement per compared
    feature (`drift_skew_info`): the L-infinity distance between the value shares of a
    categorical feature, the approximate Jensen-Shannon divergence between the histograms of a
    numeric one. A feature missing from either side has no distribution and no measurement.
    """
    anomalies = tfdv.validate_statistics(
        current, schema, previous_statistics=baseline, environment=TRAINING_ENVIRONMENT
    )
    return [
        FeatureCheck(
            feature=".".join(info.path.step),
            measure=_MEASURE_NAMES.get(measurement.type, str(measurement.type)),
            value=measurement.value,
            threshold=measurement.threshold,
        )
        for info in anomalies.drift_skew_info
        for measurement in info.drift_measurements
    ]


def _numeric_features(
    statistics: statistics_pb2.DatasetFeatureStatisticsList,
) -> dict[str, statistics_pb2.NumericStatistics]:
    features = {}
    for feature in statistics.datasets[0].features if statistics.datasets else []:
        if feature.HasField("num_stats"):
            name = feature.path.step[0] if feature.path.step else feature.name
            features[name] = feature.num_stats
    return features


def quantile_function(
    numeric: statistics_pb2.NumericStatistics,
) -> tuple[np.ndarray, np.ndarray] | None:
    """(levels, values) of the QUANTILES histogram TFDV computes: the value at each level.

    Level 0 is the minimum, 1 the maximum, the levels between are each bucket's upper bound
    (its share of the values so far). None without a quantiles histogram or values.
    """
    for histogram in numeric.histograms:
        if histogram.type != statistics_pb2.Histogram.QUANTILES or not histogram.buckets:
            continue
        counts = np.array([b.sample_count for b in histogram.buckets], dtype=np.float64)
        if counts.sum() <= 0:
            return None
        levels = np.concatenate([[0.0], np.cumsum(counts) / counts.sum()])
        values = np.array(
            [histogram.buckets[0].low_value, *(b.high_value for b in histogram.buckets)],
            dtype=np.float64,
        )
        return levels, values
    return None


def wasserstein_iqr(
    current: statistics_pb2.NumericStatistics, baseline: statistics_pb2.NumericStatistics
) -> float | None:
    """The mean distance between the two quantile functions over the baseline's IQR.

    The 1-Wasserstein distance between two distributions is the mean absolute difference of
    their quantile functions over all levels; here it is taken over `QUANTILE_RANGE` (the 10th
    to 90th percentile, interpolated between the quantiles StatisticsGen computed) and divided by
    the baseline's interquartile range, so it reads in IQRs and does not depend on the unit:
    0 = same quantiles; a shift by one IQR gives 1; scaling a positive feature by `k` gives
    `|k - 1| * mean quantile / IQR`. Jensen-Shannon divergence on equal-width histograms over
    [min, max] cannot see a rescaling by 1.6 of a heavy-tailed feature: most values stay in
    the first buckets either way.

    Returns:
      The distance (infinity when a quantile is not finite, or when the baseline has no spread
      and the quantiles differ), or None when either side has no quantiles.
    """
    quantiles_now, quantiles_before = quantile_function(current), quantile_function(baseline)
    if quantiles_now is None or quantiles_before is None:
        return None
    (levels_now, values_now), (levels_before, values_before) = quantiles_now, quantiles_before
    inner = [levels[1:-1] for levels in (levels_now, levels_before)]
    if not all(len(levels) for levels in inner):
        low, high = 0.0, 1.0
    else:
        low = max(QUANTILE_RANGE[0], *(float(levels.min()) for levels in inner))
        high = min(QUANTILE_RANGE[1], *(float(levels.max()) for levels in inner))
    grid = np.linspace(low, high, _GRID_POINTS)
    with np.errstate(invalid="ignore", over="ignore"):
        now = np.interp(grid, levels_now, values_now)
        before = np.interp(grid, levels_before, values_before)
        if not (np.isfinite(now).all() and np.isfinite(before).all()):
            return math.inf
        distance = float(np.mean(np.abs(now - before)))
    quartiles = np.interp([0.25, 0.75], levels_before, values_before)
    spread = float(quartiles[1] - quartiles[0]) or float(before[-1] - before[0])
    if spread <= 0:
        return 0.0 if distance == 0 else math.inf
    return distance / spread


def wasserstein_checks(
    current: statistics_pb2.DatasetFeatureStatisticsList,
    baseline: statistics_pb2.DatasetFeatureStatisticsList,
    schema: schema_pb2.Schema,
) -> list[FeatureCheck]:
    """`Wasserstein distance / IQR` of each feature whose annotation sets a threshold.

    A feature without numeric statistics on either side has no measurement (as with TFDV's
    comparators); the presence floor is what sees a vanished column.
    """
    now, before = _numeric_features(current), _numeric_features(baseline)
    checks = []
    for feature in schema.feature:
        threshold = wasserstein_threshold(feature)
        if threshold is None or feature.name not in now or feature.name not in before:
            continue
        value = wasserstein_iqr(now[feature.name], before[feature.name])
        if value is not None:
            checks.append(FeatureCheck(feature.name, WASSERSTEIN, value, threshold))
    return checks


def compare_statistics(
    current: statistics_pb2.DatasetFeatureStatisticsList,
    baseline: statistics_pb2.DatasetFeatureStatisticsList,
    schema: schema_pb2.Schema,
) -> list[FeatureCheck]:
    """Drift and presence checks of new training data against the served model's.

    Args:
      current: Statistics of the new training data.
      baseline: Statistics of the data that trained the served model.
      schema: The curated schema: `drift_comparator` thresholds, `drift:wasserstein_iqr<=`
        annotation tags and `presence.min_fraction`.

    Returns:
      Every check, sorted by feature then measure.
    """
    checks = (
        drift_checks(current, baseline, schema)
        + wasserstein_checks(current, baseline, schema)
        + presence_checks(current, schema, baseline)
    )
    return sorted(checks, key=lambda c: (c.feature, c.measure))


def add_checks_table(doc: markdown.Document, checks: list[FeatureCheck]) -> markdown.Document:
    """Adds the checks as a table (failed ones first) to a report for the KFP UI."""
    rows = sorted(checks, key=lambda c: (c.passed, c.feature, c.measure))
    return doc.table(
        [
            "feature",
            "measure",
            markdown.Column("value", numeric=True),
            markdown.Column("threshold", numeric=True),
            markdown.Column("served model's data", numeric=True),
            "result",
        ],
        [
            (
                c.feature,
                c.measure,
                f"{c.value:.4g}",
                f"≥ {c.threshold:g}" if c.measure == PRESENCE else f"≤ {c.threshold:g}",
                "" if c.baseline is None else f"{c.baseline:.4g}",
                "ok" if c.passed else markdown.bold("STOP"),
            )
            for c in rows
        ],
    )


def markdown_table(checks: list[FeatureCheck]) -> str:
    """The checks as a Markdown table alone (failed ones first)."""
    return str(add_checks_table(markdown.Document(), checks)).rstrip("\n")
