"""The TFMA evaluation config: metrics, slices and blessing thresholds."""

import json

from tensorflow_model_analysis.proto import config_pb2

from model import features
from pipeline.config import EvaluationSettings

PREDICTION_KEY = "probabilities"
CREDIT_CARD_SLICE = {"payment_type": "Credit Card"}
# ROC points and calibration buckets in the reports: enough to draw, small enough for the
# ROC's points to travel as one KFP metadata property.
ROC_THRESHOLDS = 50
CALIBRATION_BUCKETS = 10


def _auc_thresholds(settings: EvaluationSettings) -> config_pb2.MetricConfig:
    def threshold(lower_bound: float) -> config_pb2.MetricThreshold:
        return config_pb2.MetricThreshold(
            value_threshold=config_pb2.GenericValueThreshold(lower_bound={"value": lower_bound}),
            # Relative to the pushed baseline: the candidate may not lose more than the drop.
            change_threshold=config_pb2.GenericChangeThreshold(
                direction=config_pb2.MetricDirection.HIGHER_IS_BETTER,
                absolute={"value": -settings.max_auc_drop},
            ),
        )

    # Per-slice thresholds only: a plain `threshold` would apply to every slice, including
    # tiny company/hour slices whose AUC is noise (or undefined with one class).
    return config_pb2.MetricConfig(
        class_name="AUC",
        per_slice_thresholds=[
            config_pb2.PerSliceMetricThreshold(
                slicing_specs=[config_pb2.SlicingSpec()], threshold=threshold(settings.min_auc)
            ),
            config_pb2.PerSliceMetricThreshold(
                slicing_specs=[config_pb2.SlicingSpec(feature_values=CREDIT_CARD_SLICE)],
                threshold=threshold(settings.min_auc_credit_card),
            ),
        ],
    )


def build_eval_config(settings: EvaluationSettings) -> config_pb2.EvalConfig:
    """Builds the Evaluator's config for the candidate and the pushed baseline.

    Args:
      settings: Thresholds, operating point and slice features.

    Returns:
      An EvalConfig with AUC, precision/recall at the operating threshold, calibration and
      counts; overall, per slice feature and on the Credit Card slice; AUC thresholds that
      must hold overall and on Credit Card, absolutely and against the baseline. Plots for
      the reports (ROC, confusion matrix, calibration) carry no threshold.
    """
    at_threshold = json.dumps({"thresholds": [settings.operating_threshold]})
    metrics = [
        config_pb2.MetricConfig(class_name="ExampleCount"),
        _auc_thresholds(settings),
        config_pb2.MetricConfig(class_name="Precision", config=at_threshold),
        config_pb2.MetricConfig(class_name="Recall", config=at_threshold),
        config_pb2.MetricConfig(
            class_name="BinaryAccuracy",
            config=json.dumps({"threshold": settings.operating_threshold}),
        ),
        config_pb2.MetricConfig(class_name="Calibration"),
        config_pb2.MetricConfig(class_name="MeanLabel"),
        config_pb2.MetricConfig(class_name="MeanPrediction"),
        # For the reports only (no thresholds, so blessing is unchanged): the confusion matrix
        # at the operating threshold, the ROC curve and the calibration plot.
        config_pb2.MetricConfig(class_name="ConfusionMatrixAtThresholds", config=at_threshold),
        config_pb2.MetricConfig(
            class_name="ConfusionMatrixPlot",
            config=json.dumps({"num_thresholds": ROC_THRESHOLDS}),
        ),
        config_pb2.MetricConfig(
            class_name="CalibrationPlot", config=json.dumps({"num_buckets": CALIBRATION_BUCKETS})
        ),
    ]
    model_spec = dict(
        signature_name="serving_default",
        prediction_key=PREDICTION_KEY,
        label_key=features.LABEL_KEY,
        preprocessing_function_names=["transform_features"],
    )
    return config_pb2.EvalConfig(
        model_specs=[
            config_pb2.ModelSpec(name="candidate", **model_spec),
            config_pb2.ModelSpec(name="baseline", is_baseline=True, **model_spec),
        ],
        slicing_specs=[
            config_pb2.SlicingSpec(),
            config_pb2.SlicingSpec(feature_values=CREDIT_CARD_SLICE),
            *(config_pb2.SlicingSpec(feature_keys=[key]) for key in settings.slice_features),
        ],
        metrics_specs=[config_pb2.MetricsSpec(metrics=metrics)],
    )
