"""DriftGate: stops a run whose training data drifted from the served model's training data."""
