"""LatestPushedModel: the baseline for model validation, resolved by an ordinary component."""
