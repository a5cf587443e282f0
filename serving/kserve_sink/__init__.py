"""Sink for KServe's payload logger (`python -m serving.kserve_sink`)."""
