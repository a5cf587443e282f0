"""The request-logging front beside tensorflow_model_server (`python -m serving.front`)."""
