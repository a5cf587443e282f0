"""Compiles the pipeline for open-source KFP v2, runs its spec locally, submits it."""
