"""Distributed Trainer on Kubernetes: a Kubeflow Training Operator TFJob running run_fn."""
