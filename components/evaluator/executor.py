"""Executor of BaselineAwareEvaluator: drops a placeholder baseline, runs TFX's Evaluator, then
writes the reports the Kubeflow Pipelines UI shows."""

from typing import Any

from absl import logging
from tensorflow_model_analysis.proto import config_pb2
from tfx import types
from tfx.components.evaluator import executor as tfx_evaluator_executor
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import proto_utils

from components.latest_pushed_model.executor import (
    SOURCE_NONE,
    SOURCE_PROPERTY,
    VERSION_PROPERTY,
)
from components.reports import html_report, kfp_metrics
from components.reports.evaluation import describe_blessing
from metadata.tfma_results import read_evaluation

METRICS_KEY = "metrics"
CLASSIFICATION_METRICS_KEY = "classification_metrics"
REPORT_KEY = "report"
UI_OUTPUT_KEYS = (METRICS_KEY, CLASSIFICATION_METRICS_KEY, REPORT_KEY)
# TFX's Evaluator imports `custom_extractors` from this module (its `module_path` hook).
EXTRACTORS_MODULE = "components.evaluator.extractors"
# TFX's Evaluator writes this custom property on its ModelBlessing (1 blessed, 0 not).
_BLESSED_PROPERTY = "blessed"
NO_BASELINE = "none (first push: absolute thresholds only)"


def has_served_baseline(baselines: list[types.Artifact]) -> bool:
    """True when the baseline input is a model that was actually pushed.

    Args:
      baselines: The Evaluator's `baseline_model` input artifacts.

    Returns:
      False when there is no baseline or LatestPushedModel marked it as a stand-in
      (`baseline_source = none`: nothing had been pushed yet).
    """
    return any(
        not b.has_custom_property(SOURCE_PROPERTY)
        or b.get_string_custom_property(SOURCE_PROPERTY) != SOURCE_NONE
        for b in baselines
    )


def describe_baseline(baselines: list[types.Artifact]) -> str:
    """`version N` (or the artifact URI) of the served baseline, or that there was none."""
    if not has_served_baseline(baselines):
        return NO_BASELINE
    served = next(
        b for b in baselines if b.get_string_custom_property(SOURCE_PROPERTY) != SOURCE_NONE
    )
    version = served.get_string_custom_property(VERSION_PROPERTY)
    return f"version {version}" if version else served.uri


def write_ui_outputs(
    output_dict: dict[str, list[types.Artifact]],
    eval_config: config_pb2.EvalConfig,
    baseline: str,
) -> None:
    """Writes `metrics`, `classification_metrics` and `report` from the Evaluator's outputs.

    Args:
      output_dict: The Evaluator's outputs after TFX's executor ran (`evaluation` and
        `blessing` are read; the three UI outputs are written).
      eval_config: The EvalConfig the evaluation ran with.
      baseline: What the candidate was compared with, for people.
    """
    evaluation_artifact = artifact_utils.get_single_instance(
        output_dict[standard_component_specs.EVALUATION_KEY]
    )
    blessing = artifact_utils.get_single_instance(
        output_dict[standard_component_specs.BLESSING_KEY]
    )
    blessed = blessing.get_int_custom_property(_BLESSED_PROPERTY) == 1
    evaluation = read_evaluation(evaluation_artifact.uri, eval_config)
    reason = describe_blessing(evaluation, blessed)

    metrics = artifact_utils.get_single_instance(output_dict[METRICS_KEY])
    metrics.set_string_custom_property(kfp_metrics.DISPLAY_NAME, "evaluation")
    for name, value in kfp_metrics.ui_rows(
        kfp_metrics.scalar_metrics(evaluation, blessed=blessed, reason=reason, baseline=baseline)
    ).items():
        if isinstance(value, str):
            metrics.set_string_custom_property(name, value)
        else:
            metrics.set_float_custom_property(name, value)

    classification = artifact_utils.get_single_instance(output_dict[CLASSIFICATION_METRICS_KEY])
    classification.set_string_custom_property(
        kfp_metrics.DISPLAY_NAME, "candidate, whole eval split"
    )
    if evaluation.roc:
        classification.set_json_value_custom_property(
            kfp_metrics.CONFIDENCE_METRICS, kfp_metrics.confidence_metrics(evaluation.roc)
        )
    if evaluation.confusion is not None:
        classification.set_json_value_custom_property(
            kfp_metrics.CONFUSION_MATRIX, kfp_metrics.confusion_matrix(evaluation.confusion)
        )

    report = artifact_utils.get_single_instance(output_dict[REPORT_KEY])
    # A value artifact: setting the value writes the file at its URI.
    report.value = html_report.render_html(
        evaluation, blessed=blessed, reason=reason, baseline=baseline, title="Model evaluation"
    )


def with_pruned_extracts(exec_properties: dict[str, Any]) -> dict[str, Any]:
    """Points TFX's `custom_extractors` hook at `extractors.py` unless user code is given.

    TFX's executor imports `custom_extractors` (and `custom_eval_shared_model`, absent there,
    so TFMA's default is kept) from `module_path`; a user's `module_file` or `module_path`
    is left alone.
    """
    module_keys = (
        standard_component_specs.MODULE_FILE_KEY,
        standard_component_specs.MODULE_PATH_KEY,
    )
    if any(exec_properties.get(k) for k in module_keys):
        return exec_properties
    return {**exec_properties, standard_component_specs.MODULE_PATH_KEY: EXTRACTORS_MODULE}


class Executor(tfx_evaluator_executor.Executor):
    """TFX's Evaluator executor, evaluating a stand-in baseline only when one was served, and
    writing UI reports TFX's executor never sees."""

    def Do(
        self,
        input_dict: dict[str, list[types.Artifact]],
        output_dict: dict[str, list[types.Artifact]],
        exec_properties: dict[str, Any],
    ) -> None:
        """Evaluates the candidate, against the served baseline when there is one.

        Without a served model, TFX's own no-baseline path runs: the baseline ModelSpec and
        every change threshold are dropped (TFX's "rubber stamp" of a first run), so the
        candidate is judged by the absolute thresholds and evaluated once, not twice.
        Then the UI outputs are written from TFX's `evaluation` and `blessing`.

        Args:
          input_dict: As for TFX's Evaluator.
          output_dict: As for TFX's Evaluator, plus `metrics`, `classification_metrics` and
            `report`.
          exec_properties: As for TFX's Evaluator.
        """
        key = standard_component_specs.BASELINE_MODEL_KEY
        baselines = input_dict.get(key, [])
        if key in input_dict and not has_served_baseline(input_dict[key]):
            logging.info("No model served yet: evaluating the candidate without a baseline.")
            input_dict = {k: v for k, v in input_dict.items() if k != key}
        tfx_outputs = {k: v for k, v in output_dict.items() if k not in UI_OUTPUT_KEYS}
        super().Do(input_dict, tfx_outputs, with_pruned_extracts(exec_properties))
        eval_config = proto_utils.json_to_proto(
            exec_properties[standard_component_specs.EVAL_CONFIG_KEY], config_pb2.EvalConfig()
        )
        write_ui_outputs(output_dict, eval_config, describe_baseline(baselines))
