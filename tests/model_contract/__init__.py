"""Tests of the model directory contract."""
