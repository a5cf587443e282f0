"""Benchmarks (speed goals live here, not in tests)."""
