"""The metadata shapes the KFP v2 UI reads from `system.Metrics` and `system.ClassificationMetrics`.

Shapes follow kubeflow/pipelines `frontend/src/components/viewers/MetricsVisualizations.tsx`
(scalar metrics: every custom property but `display_name`; `confusionMatrix`:
`{annotationSpecs: [{displayName}], rows: [{row: [...]}]}`, rows = true label, columns =
predicted label) and `ROCCurveHelper.tsx` (`confidenceMetrics`: a list of
`{confidenceThreshold, recall, falsePositiveRate}`, all numbers). KFP's backend
(`backend/src/v2/metadata/converter.go`, StructValueToMLMDValue) stores a list as
`{list: [...]}` and a struct as `{struct: {...}}`, which is what the UI unwraps; it turns bools
into ints and rejects nulls, so every value here is a finite number or a string.
"""

import re

from components.reports.evaluation import (
    HEADLINE_METRICS,
    OVERALL,
    ConfusionMatrix,
    EvaluationResult,
    RocPoint,
    SliceResult,
)

CONFIDENCE_METRICS = "confidenceMetrics"
CONFUSION_MATRIX = "confusionMatrix"
DISPLAY_NAME = "display_name"


def slice_prefix(result: SliceResult) -> str:
    """`overall`, or the slice's value as a name (`payment_type=Credit Card` -> `credit_card`)."""
    if not result.feature:
        return OVERALL
    return re.sub(r"[^0-9a-z]+", "_", result.value.lower()).strip("_") or "slice"


def scalar_metrics(
    evaluation: EvaluationResult, *, blessed: bool, reason: str, baseline: str
) -> dict[str, float | str]:
    """Headline metrics and the blessing decision as flat, UI-readable scalars.

    Args:
      evaluation: The evaluation read from TFMA's output.
      blessed: The Evaluator's verdict.
      reason: Why (which thresholds failed, or that all hold).
      baseline: What the candidate was compared with (`version N` or `none (...)`).

    Returns:
      `<slice>_<metric>` for the whole data set and each headline slice (e.g. `overall_auc`,
      `credit_card_auc`), `baseline_<slice>_<metric>` when a baseline was evaluated, the
      operating threshold, `blessed` (1 or 0), `blessing_reason` and `baseline`.
    """
    values: dict[str, float | str] = {"blessed": 1 if blessed else 0}
    for result in evaluation.headline:
        prefix = slice_prefix(result)
        for name in HEADLINE_METRICS:
            if name in result.candidate:
                values[f"{prefix}_{name}"] = result.candidate[name]
        for name in HEADLINE_METRICS:
            if name in result.baseline:
                values[f"baseline_{prefix}_{name}"] = result.baseline[name]
    if evaluation.confusion is not None:
        values["operating_threshold"] = evaluation.confusion.threshold
    values["blessing_reason"] = reason
    values["baseline"] = baseline
    return values


def confidence_metrics(points: list[RocPoint]) -> list[dict[str, float]]:
    """ROC points as the UI's `confidenceMetrics` list."""
    return [
        {
            "confidenceThreshold": p.threshold,
            "recall": p.recall,
            "falsePositiveRate": p.false_positive_rate,
        }
        for p in points
    ]


def confusion_matrix(
    matrix: ConfusionMatrix, labels: tuple[str, str] = ("0 (negative)", "1 (positive)")
) -> dict[str, list[dict[str, object]]]:
    """A binary confusion matrix as the UI's `confusionMatrix` struct.

    Args:
      matrix: Counts at the operating threshold.
      labels: Display names of the negative and positive class.

    Returns:
      `annotationSpecs` (one per class) and `rows` (one per true class, one count per
      predicted class), in the same class order.
    """
    return {
        "annotationSpecs": [{"displayName": label} for label in labels],
        "rows": [
            {"row": [matrix.true_negatives, matrix.false_positives]},
            {"row": [matrix.false_negatives, matrix.true_positives]},
        ],
    }
