"""Keras trainer for the taxi model: model, distribution strategy, export and TFX run_fn."""
