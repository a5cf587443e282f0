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
from collections.abc import Mapping, Sequence

from metadata.tfma_results import (
    COMPARED_METRICS,
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
_MAX_ROWS = 99


def slice_prefix(result: SliceResult) -> str:
    """`overall`, or the slice's value as a name (`payment_type=Credit Card` -> `credit_card`)."""
    if not result.feature:
        return OVERALL
    return re.sub(r"[^0-9a-z]+", "_", result.value.lower()).strip("_") or "slice"


def scalar_metrics(
    evaluation: EvaluationResult, *, blessed: bool, reason: str, baseline: str
) -> dict[str, float | str]:
    """Headline metrics and the blessing decision as flat, UI-readable scalars, in reading order.

    Args:
      evaluation: The evaluation read from TFMA's output.
      blessed: The Evaluator's verdict.
      reason: Why (which thresholds failed, or that all hold).
      baseline: What the candidate was compared with (`version N` or `none (...)`).

    Returns:
      `blessed` (1 or 0) and `blessing_reason`; then `<slice>_<metric>` for the whole data set
      and each headline slice (e.g. `overall_auc`, `credit_card_auc`), the metrics the
      thresholds judge (`COMPARED_METRICS`) first; `baseline`, the operating threshold, the
      other headline metrics; then `baseline_<slice>_<metric>` when a baseline was evaluated.
    """
    rest = [m for m in HEADLINE_METRICS if m not in COMPARED_METRICS]

    def of(baseline_model: bool, names: Sequence[str]) -> dict[str, float]:
        found: dict[str, float] = {}
        for result in evaluation.headline:
            measured = result.baseline if baseline_model else result.candidate
            prefix = ("baseline_" if baseline_model else "") + slice_prefix(result)
            found |= {f"{prefix}_{name}": measured[name] for name in names if name in measured}
        return found

    values: dict[str, float | str] = {"blessed": 1 if blessed else 0, "blessing_reason": reason}
    values |= of(False, COMPARED_METRICS)
    values["baseline"] = baseline
    if evaluation.confusion is not None:
        values["operating_threshold"] = evaluation.confusion.threshold
    values |= of(False, rest)
    values |= of(True, COMPARED_METRICS) | of(True, rest)
    return values


def ui_rows(values: Mapping[str, float | str]) -> dict[str, float | str]:
    """Names the values so that the KFP UI lists them in the given order.

    The UI lists a `system.Metrics` artifact's custom properties sorted by name, 10 rows a page
    (kubeflow/pipelines `frontend/src/components/viewers/MetricsVisualizations.tsx`,
    ScalarMetricsSection over protobuf's sorted map entries): a two-digit rank in front of each
    name (`01_blessed`, `03_overall_auc`) makes that sort the reading order.

    Raises:
      ValueError: If there are more values than two digits can rank.
    """
    if len(values) > _MAX_ROWS:
        raise ValueError(f"{len(values)} metrics rows; at most {_MAX_ROWS} can be ranked")
    return {f"{rank:02d}_{name}": value for rank, (name, value) in enumerate(values.items(), 1)}


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
