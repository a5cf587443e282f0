"""Test support for the serving tests and benchmark: small real contract SavedModels."""
