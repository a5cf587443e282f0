"""BaselineAwareEvaluator: TFX's Evaluator that skips the baseline when nothing is served yet."""
