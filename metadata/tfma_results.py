"""The one TFMA-results reader: an Evaluator output as plain data (slices, ROC, calibration).

The Evaluator's reports (`components/reports/`), the run summary and lineage
(`operations/`) all read evaluations here.
"""

import dataclasses
import math
from typing import Any

import tensorflow_model_analysis as tfma
from google.protobuf import json_format
from tensorflow_model_analysis.proto import config_pb2

# Scalar metrics the reports show, in this order, when the EvalConfig computes them.
HEADLINE_METRICS = (
    "auc",
    "precision",
    "recall",
    "binary_accuracy",
    "calibration",
    "mean_label",
    "mean_prediction",
    "example_count",
)
# The headline metrics the blessing thresholds and the candidate/baseline comparison are about.
COMPARED_METRICS = ("auc", "precision", "recall", "binary_accuracy")
OVERALL = "overall"
# Metric and plot keys TFMA writes for ConfusionMatrixAtThresholds, ConfusionMatrixPlot and
# CalibrationPlot (tensorflow_model_analysis/metrics/*.py, as loaded by load_eval_result).
_CONFUSION_METRIC = "confusion_matrix_at_thresholds"
_MATRICES = "confusionMatrixAtThresholds"
_BUCKETS = "calibrationHistogramBuckets"


@dataclasses.dataclass(frozen=True)
class SliceResult:
    """Scalar metrics of one slice.

    Attributes:
      feature: The slicing feature ("" for the whole data set; names joined for crosses).
      value: The slice's value ("" for the whole data set).
      candidate: Metric name -> value for the candidate model.
      baseline: The same for the baseline model (empty when no baseline was evaluated).
    """

    feature: str
    value: str
    candidate: dict[str, float]
    baseline: dict[str, float]

    @property
    def name(self) -> str:
        """`overall` or `feature=value`."""
        return f"{self.feature}={self.value}" if self.feature else OVERALL


@dataclasses.dataclass(frozen=True)
class ConfusionMatrix:
    """Counts at one decision threshold (a prediction >= threshold is positive)."""

    threshold: float
    true_positives: float
    false_positives: float
    true_negatives: float
    false_negatives: float


@dataclasses.dataclass(frozen=True)
class RocPoint:
    """One point of the ROC curve."""

    threshold: float
    recall: float
    false_positive_rate: float


@dataclasses.dataclass(frozen=True)
class CalibrationBucket:
    """Examples whose prediction fell in [lower, upper), with their mean label and prediction."""

    lower: float
    upper: float
    examples: float
    mean_label: float
    mean_prediction: float


@dataclasses.dataclass
class EvaluationResult:
    """What the reports show of one evaluation.

    Attributes:
      slices: Every slice TFMA computed, the whole data set first.
      headline: The whole data set and the slices the EvalConfig names by value (those the
        blessing thresholds are about), in config order.
      roc: The candidate's ROC curve on the whole data set (from ConfusionMatrixPlot).
      baseline_roc: The baseline's, when one was evaluated.
      confusion: The candidate's confusion matrix on the whole data set at the operating
        threshold (from ConfusionMatrixAtThresholds), if the config computes it.
      calibration: Headline slice name -> the candidate's calibration buckets (CalibrationPlot).
      failures: One line per failed blessing threshold; empty when every threshold holds.
    """

    slices: list[SliceResult]
    headline: list[SliceResult]
    roc: list[RocPoint]
    baseline_roc: list[RocPoint]
    confusion: ConfusionMatrix | None
    calibration: dict[str, list[CalibrationBucket]]
    failures: list[str]

    @property
    def has_baseline(self) -> bool:
        """True when the baseline model was evaluated beside the candidate."""
        return any(s.baseline for s in self.slices)


def _number(value: Any) -> float | None:
    # TFMA's JSON spells NaN and infinities as strings; proto3 leaves zero counts out.
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _slice_name_parts(slice_key: Any) -> tuple[str, str]:
    if not slice_key:
        return "", ""
    return (
        ", ".join(_text(k) for k, _ in slice_key),
        ", ".join(_text(v) for _, v in slice_key),
    )


def _scalars(metrics: dict[str, Any]) -> dict[str, float]:
    found = {}
    for output in metrics.values():
        for sub in output.values():
            for name, value in sub.items():
                if name.endswith("_diff") or "doubleValue" not in value:
                    continue
                number = _number(value["doubleValue"])
                if number is not None:
                    found[name] = number
    return found


def _binary(by_output: dict[str, Any]) -> dict[str, Any]:
    # A single-output binary model: output name "" and sub key "".
    return by_output.get("", {}).get("", {})


def _load(uri: str, model_name: str) -> Any:
    # An unknown model name (or an empty directory) loads as no metrics, without raising.
    result = tfma.load_eval_result(uri, model_name=model_name)
    return result if result.slicing_metrics else None


def _models(eval_config: config_pb2.EvalConfig) -> tuple[str, str | None]:
    candidate = next((m.name for m in eval_config.model_specs if not m.is_baseline), "")
    baseline = next((m.name for m in eval_config.model_specs if m.is_baseline), None)
    return candidate, baseline


def _headline_keys(eval_config: config_pb2.EvalConfig) -> list[tuple[tuple[str, str], ...]]:
    keys: list[tuple[tuple[str, str], ...]] = []
    for spec in eval_config.slicing_specs:
        if not spec.feature_keys and not spec.feature_values and not spec.slice_keys_sql:
            keys.append(())
        elif spec.feature_values and not spec.feature_keys:
            keys.append(tuple(sorted(spec.feature_values.items())))
    if () not in keys:
        keys.insert(0, ())
    return keys


def _roc(plots: dict[str, Any]) -> list[RocPoint]:
    points: list[RocPoint] = []
    for matrix in _binary(plots).get(_MATRICES, {}).get("matrices", []):
        threshold = _number(matrix.get("threshold", 0.0))
        recall = _number(matrix.get("recall", 0.0))
        fpr = _number(matrix.get("falsePositiveRate", 0.0))
        if threshold is None or recall is None or fpr is None:
            continue
        point = RocPoint(threshold, recall, fpr)
        if not points or points[-1] != point:
            points.append(point)
    return points


def _calibration(plots: dict[str, Any]) -> list[CalibrationBucket]:
    buckets = []
    for bucket in _binary(plots).get(_BUCKETS, {}).get("buckets", []):
        examples = _number(bucket.get("numWeightedExamples", 0.0)) or 0.0
        if examples <= 0:
            continue
        lower = _number(bucket.get("lowerThresholdInclusive", 0.0))
        upper = _number(bucket.get("upperThresholdExclusive", 0.0))
        buckets.append(
            CalibrationBucket(
                lower=0.0 if lower is None else lower,
                upper=1.0 if upper is None else upper,
                examples=examples,
                mean_label=(_number(bucket.get("totalWeightedLabel", 0.0)) or 0.0) / examples,
                mean_prediction=(
                    (_number(bucket.get("totalWeightedRefinedPrediction", 0.0)) or 0.0) / examples
                ),
            )
        )
    return buckets


def _confusion(metrics: dict[str, Any]) -> ConfusionMatrix | None:
    matrices = _binary(metrics).get(_CONFUSION_METRIC, {}).get(_MATRICES, {}).get("matrices", [])
    if not matrices:
        return None
    m = matrices[0]

    def count(name: str) -> float:
        return _number(m.get(name, 0.0)) or 0.0

    return ConfusionMatrix(
        threshold=count("threshold"),
        true_positives=count("truePositives"),
        false_positives=count("falsePositives"),
        true_negatives=count("trueNegatives"),
        false_negatives=count("falseNegatives"),
    )


def _failures(uri: str) -> list[str]:
    validation = tfma.load_validation_result(uri)
    lines = []
    for per_slice in validation.metric_validations_per_slice:
        where = (
            ", ".join(
                f"{k.column}="
                + (k.bytes_value.decode() if k.HasField("bytes_value") else str(k.int64_value))
                for k in per_slice.slice_key.single_slice_keys
            )
            or OVERALL
        )
        for failure in per_slice.failures:
            kind = "change vs baseline" if failure.metric_key.is_diff else "value"
            bound = json_format.MessageToDict(failure.metric_threshold)
            lines.append(
                f"{failure.metric_key.name} {kind} on {where} = "
                f"{failure.metric_value.double_value.value:.4f} fails {bound}"
            )
    return sorted(lines)


def read_evaluation(uri: str, eval_config: config_pb2.EvalConfig) -> EvaluationResult:
    """Reads the Evaluator's output directory.

    Args:
      uri: The ModelEvaluation artifact's directory (TFMA's output path).
      eval_config: The EvalConfig the Evaluator ran with (names the candidate, the baseline
        and the headline slices).

    Returns:
      The evaluation as plain data; the baseline parts are empty when the baseline was not
      evaluated (TFX drops it when no model was served yet).

    Raises:
      ValueError: If the directory holds no metrics of the candidate.
    """
    candidate_name, baseline_name = _models(eval_config)
    # TFMA keys results by model name only when it evaluated several models.
    candidate = _load(uri, candidate_name) or _load(uri, "")
    if candidate is None:
        raise ValueError(f"No TFMA metrics for model {candidate_name!r} in {uri}")
    baseline = _load(uri, baseline_name) if baseline_name else None
    baseline_metrics = {
        _key(k): _scalars(m) for k, m in (baseline.slicing_metrics if baseline else [])
    }
    by_key: dict[tuple[tuple[str, str], ...], SliceResult] = {}
    for key, metrics in candidate.slicing_metrics:
        feature, value = _slice_name_parts(key)
        by_key[_key(key)] = SliceResult(
            feature, value, _scalars(metrics), baseline_metrics.get(_key(key), {})
        )
    slices = sorted(
        by_key.values(),
        key=lambda s: (s.feature != "", s.feature, -s.candidate.get("example_count", 0)),
    )
    headline_keys = [k for k in _headline_keys(eval_config) if k in by_key]
    plots = {_key(key): p for key, p in candidate.plots}
    baseline_plots = {_key(key): p for key, p in (baseline.plots if baseline else [])}
    overall_metrics: dict[str, Any] = next((m for k, m in candidate.slicing_metrics if not k), {})
    return EvaluationResult(
        slices=slices,
        headline=[by_key[k] for k in headline_keys],
        roc=_roc(plots.get((), {})),
        baseline_roc=_roc(baseline_plots.get((), {})),
        confusion=_confusion(overall_metrics),
        calibration={by_key[k].name: _calibration(plots[k]) for k in headline_keys if k in plots},
        failures=_failures(uri),
    )


def _key(slice_key: Any) -> tuple[tuple[str, str], ...]:
    return tuple((_text(k), _text(v)) for k, v in slice_key)
