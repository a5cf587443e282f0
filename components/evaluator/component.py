"""BaselineAwareEvaluator component: TFX's Evaluator with the executor above and UI outputs."""

from tensorflow_model_analysis.proto import config_pb2
from tfx import types
from tfx.components import Evaluator
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import standard_artifacts, standard_component_specs
from tfx.types.component_spec import ChannelParameter
from tfx.utils import json_utils

from components import ui_artifacts
from components.evaluator import executor


class BaselineAwareEvaluatorSpec(standard_component_specs.EvaluatorSpec):
    """TFX's EvaluatorSpec plus the outputs the Kubeflow Pipelines UI renders."""

    OUTPUTS = {
        **standard_component_specs.EvaluatorSpec.OUTPUTS,
        executor.METRICS_KEY: ChannelParameter(type=ui_artifacts.Metrics),
        executor.CLASSIFICATION_METRICS_KEY: ChannelParameter(
            type=ui_artifacts.ClassificationMetrics
        ),
        executor.REPORT_KEY: ChannelParameter(type=ui_artifacts.HTML),
    }


class BaselineAwareEvaluator(Evaluator):
    """TFX's Evaluator (same inputs, outputs and validation) that evaluates the baseline only
    when LatestPushedModel found a served model; before the first push the candidate is judged
    on absolute thresholds alone, as TFX does when no baseline resolves.

    It also outputs, for people and the KFP UI: `metrics` (headline metrics and the verdict),
    `classification_metrics` (ROC curve and confusion matrix) and `report` (an HTML page).
    """

    SPEC_CLASS = BaselineAwareEvaluatorSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.Executor)

    def __init__(  # pylint: disable=super-init-not-called
        self,
        examples: types.BaseChannel,
        model: types.BaseChannel,
        eval_config: config_pb2.EvalConfig,
        baseline_model: types.BaseChannel | None = None,
        example_splits: list[str] | None = None,
        schema: types.BaseChannel | None = None,
    ):
        """Builds the evaluator.

        Args:
          examples: Examples to evaluate on.
          model: The candidate model.
          eval_config: Metrics, slices and thresholds; the reports need ConfusionMatrixPlot,
            ConfusionMatrixAtThresholds and CalibrationPlot for their ROC curve, confusion
            matrix and calibration plot (they are left out when absent).
          baseline_model: The served model (LatestPushedModel's output), if any.
          example_splits: Splits of `examples` to evaluate on.
          schema: Optional schema of the examples.
        """
        # TFX's Evaluator.__init__ builds its own EvaluatorSpec, which lacks the UI outputs;
        # this builds the extended spec the same way and goes to BaseComponent directly.
        spec = BaselineAwareEvaluatorSpec(
            examples=examples,
            model=model,
            baseline_model=baseline_model,
            example_splits=json_utils.dumps(example_splits),
            eval_config=eval_config,
            schema=schema,
            # As TFX's Evaluator passes it when unset (keeps the compiled spec unchanged).
            fairness_indicator_thresholds=json_utils.dumps(None),
            evaluation=types.Channel(type=standard_artifacts.ModelEvaluation),
            blessing=types.Channel(type=standard_artifacts.ModelBlessing),
            metrics=types.Channel(type=ui_artifacts.Metrics),
            classification_metrics=types.Channel(type=ui_artifacts.ClassificationMetrics),
            report=types.Channel(type=ui_artifacts.HTML),
        )
        base_component.BaseComponent.__init__(self, spec=spec)
