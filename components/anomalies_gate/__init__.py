"""AnomaliesGate: stops a run on data anomalies before anything trains on the data."""
