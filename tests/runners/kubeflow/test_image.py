"""The KFP image's Dockerfile: the production server at the pinned version, every package in."""

import os
import re

import setuptools

from tests.runners.kubeflow.conftest import REPO

DOCKERFILE = os.path.join(REPO, "kubeflow", "pipeline", "Dockerfile")


def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


def test_the_image_carries_tensorflow_model_server_of_the_pinned_serving_api() -> None:
    dockerfile = _read(DOCKERFILE)

    def pinned(stack: str) -> str:
        constraints = _read(os.path.join(REPO, "constraints", f"{stack}.txt"))
        (version,) = re.findall(r"^tensorflow-serving-api==(\S+)$", constraints, re.M)
        return version

    # The default build is the primary stack; the compat build's arguments are documented.
    assert "ARG STACK=tfx-1.21\n" in dockerfile
    assert f"ARG TF_SERVING_VERSION={pinned('tfx-1.21')}\n" in dockerfile
    assert f"--build-arg TF_SERVING_VERSION={pinned('tfx-1.16')}" in dockerfile
    assert "FROM tensorflow/serving:${TF_SERVING_VERSION} AS tf_serving" in dockerfile
    # On PATH in the final stage, where LoadTest looks it up.
    assert (
        "COPY --from=tf_serving /usr/bin/tensorflow_model_server /usr/bin/tensorflow_model_server"
        in dockerfile
    )


def test_the_image_copies_every_installed_package() -> None:
    dockerfile = _read(DOCKERFILE)
    copied = set(re.findall(r"^COPY (\w+)/ \1/$", dockerfile, re.M))
    top_level = {
        name.split(".")[0]
        for name in setuptools.find_packages(
            REPO, include=["*"], exclude=["tests*", "bench*", "devtools*", "scripts*"]
        )
    }
    assert top_level <= copied, f"not copied into the image: {sorted(top_level - copied)}"
