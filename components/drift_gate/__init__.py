"""DriftGate: stops a run whose training data drifted from the data the served model learned from."""
