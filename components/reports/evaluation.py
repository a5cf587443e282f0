"""Why a model was (not) blessed, in words for people, from the evaluation's threshold failures."""

from metadata.tfma_results import EvaluationResult


def describe_blessing(evaluation: EvaluationResult, blessed: bool) -> str:
    """Why the model was (not) blessed, one line per failed threshold.

    Args:
      evaluation: The evaluation, with its threshold failures.
      blessed: The Evaluator's verdict.

    Returns:
      A short explanation for people.
    """
    if not blessed:
        return "\n".join(evaluation.failures) or "TFMA's validation did not pass."
    where = ", ".join(s.name for s in evaluation.headline)
    against = (
        "absolutely and against the baseline"
        if evaluation.has_baseline
        else "absolutely (no baseline was served yet)"
    )
    return f"Every threshold holds on {where}, {against}."
