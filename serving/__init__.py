"""TF-Serving-compatible local model server, prediction clients and serving utilities."""
