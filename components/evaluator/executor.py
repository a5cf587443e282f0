"""Executor of BaselineAwareEvaluator: drops a placeholder baseline, then runs TFX's Evaluator."""

from typing import Any

from absl import logging
from tfx import types
from tfx.components.evaluator import executor as tfx_evaluator_executor
from tfx.types import standard_component_specs

from components.latest_pushed_model.executor import SOURCE_NONE, SOURCE_PROPERTY


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


class Executor(tfx_evaluator_executor.Executor):
    """TFX's Evaluator executor, evaluating a stand-in baseline only when one was served."""

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

        Args:
          input_dict: As for TFX's Evaluator.
          output_dict: As for TFX's Evaluator.
          exec_properties: As for TFX's Evaluator.
        """
        key = standard_component_specs.BASELINE_MODEL_KEY
        if key in input_dict and not has_served_baseline(input_dict[key]):
            logging.info("No model served yet: evaluating the candidate without a baseline.")
            input_dict = {k: v for k, v in input_dict.items() if k != key}
        super().Do(input_dict, output_dict, exec_properties)
