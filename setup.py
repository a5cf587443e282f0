"""Installs the project's packages so TFX can import user code by dotted path."""

from setuptools import find_packages, setup

setup(
    name="tfx-taxi-kfp",
    version="0.1.0",
    description="One TFX pipeline: local Beam runs, Kubeflow Pipelines v2, TF Serving.",
    python_requires=">=3.10,<3.11",
    # The top-level folder `kubeflow/` holds manifests and the Dockerfile only: the import
    # name `kubeflow` belongs to the official Kubeflow SDK, so it is never a package here.
    packages=find_packages(
        include=[
            "pipeline*",
            "runners*",
            "operations*",
            "commands*",
            "components*",
            "model*",
            "metadata*",
            "schemas*",
            "model_contract*",
            "serving*",
            "typed_config*",
        ]
    ),
    package_data={"schemas": ["*/*.pbtxt"]},
    install_requires=[
        "tfx[kfp]==1.16.0",
        "tensorflow-serving-api==2.16.1",
        "pydantic>=2,<3",
        # The REST front end and the JSON logs of serving/ (versions pinned in constraints.txt).
        "tornado",
        "python-json-logger",
        # Traces (serving/tracing.py, operations/telemetry.py). The OTLP exporter stays at 1.15.0:
        # later ones pin the SDK to their own minor version, and the protobuf 3.20 compatible
        # ones (<= 1.27) would then need an SDK older than the 1.45 the GCP packages require.
        "opentelemetry-sdk",
        "opentelemetry-instrumentation-grpc",
        "opentelemetry-exporter-otlp-proto-grpc",
        "prometheus_client",
        # grpc.health.v1 for gRPC probes; 1.48.2 is the newest on protobuf 3.20.
        "grpcio-health-checking",
    ],
    # The one command: `taxi run|compile|check|submit|serve|predict|lineage|monitor|...`.
    entry_points={"console_scripts": ["taxi=commands.cli:main"]},
    extras_require={"dev": ["pytest", "ruff", "mypy", "kubernetes-validate"]},
)
