"""Human-readable reports for the Kubeflow Pipelines UI: Markdown, KFP metric shapes, HTML."""
