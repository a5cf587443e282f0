"""BaselineAwareEvaluator component: TFX's Evaluator with the executor above."""

from tfx.components import Evaluator
from tfx.dsl.components.base import executor_spec

from components.evaluator import executor


class BaselineAwareEvaluator(Evaluator):
    """TFX's Evaluator (same inputs, outputs and validation) that evaluates the baseline only
    when LatestPushedModel found a served model; before the first push the candidate is judged
    on absolute thresholds alone, as TFX does when no baseline resolves."""

    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.Executor)
