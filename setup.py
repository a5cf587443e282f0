"""Installs the project's packages so TFX can import user code by dotted path."""

from setuptools import find_packages, setup

setup(
    name="tfx-taxi-kfp",
    version="0.1.0",
    description="One TFX pipeline: local Beam runs, Kubeflow Pipelines v2, TF Serving.",
    # Two stacks (docs/stack.md): tfx-1.21 on Python 3.11-3.13 (primary) and tfx-1.16 on Python 3.10
    # (compat). The ranges below admit both; constraints/<stack>.txt pins every version.
    python_requires=">=3.10,<3.14",
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
        "tfx[kfp]>=1.16,<1.22",
        # TFX 1.21's kfp extra is empty on Python >= 3.12: name the SDK itself.
        "kfp>=2.5,<3",
        "tensorflow-serving-api>=2.16,<2.22",
        # TFT and TFMA need Keras 2; the trainer imports tf_keras explicitly.
        "tf-keras>=2.16,<2.22",
        # The trainer's TensorBoard callback: TF 2.21 no longer depends on tensorboard.
        "tensorboard>=2.16,<2.22",
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
    extras_require={
        "dev": ["pytest", "ruff", "mypy", "kubernetes-validate"],
        # The spec's platform section checked against kfp-kubernetes' protos in the same env. Needs
        # protobuf >= 4.21: tfx-1.21 only (tfx-1.16 uses the .venv-kfp-kubernetes tool venv).
        "kfp-kubernetes": ["kfp-kubernetes"],
    },
)
