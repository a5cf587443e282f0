"""The served model's identity: what the steps that compare with it are cached on.

Standard library and `model_contract` only: the KFP `ServedModel` task imports it without
TensorFlow, so the always-run step stays cheap.
"""

import hashlib
import os

import model_contract
from model_contract import FileSystem

# The identity of a model directory with nothing served.
NONE = "none"
_DIGEST_CHARS = 16


class ServedModelChangedError(RuntimeError):
    """The served model changed between the run's start and a step that compares with it."""


def _digest(fs: FileSystem, path: str) -> str:
    with fs.GFile(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()[:_DIGEST_CHARS]


def served_model_identity(fs: FileSystem, model_dir: str) -> str:
    """Names the served version, its content and the rollbacks above it, in one line.

    `version=<v> manifest=sha256:<digest>` for the version TF Serving's default policy serves
    (the digest is of its push manifest, or of `saved_model.pb` for a version copied by hand),
    plus `withdrawn=<v,...>` for versions a rollback took out of serving: a rollback is then a
    change even when it returns to a version served before, so what compared with the served
    model compares again. Retention deleting old versions does not change it.

    Args:
      fs: The filesystem (`tf.io.gfile`, or `model_contract.LocalFileSystem()`).
      model_dir: `<serving_base>/<model_name>`; may not exist yet.

    Returns:
      The identity; `none` (plus any withdrawn versions) when no version is served.
    """
    parts = []
    version = model_contract.latest_version(fs, model_dir)
    if version is None:
        parts.append(NONE)
    else:
        version_dir = os.path.join(model_dir, str(version))
        manifest = os.path.join(version_dir, model_contract.MANIFEST_FILE)
        if fs.exists(manifest):
            parts += [f"version={version}", f"manifest=sha256:{_digest(fs, manifest)}"]
        else:
            saved_model = os.path.join(version_dir, model_contract.SAVED_MODEL_FILE)
            parts += [f"version={version}", f"saved_model=sha256:{_digest(fs, saved_model)}"]
    names = fs.listdir(model_dir) if fs.isdir(model_dir) else []
    withdrawn = sorted(
        v for v in (model_contract.withdrawn_version(name) for name in names) if v is not None
    )
    if withdrawn:
        parts.append("withdrawn=" + ",".join(str(v) for v in withdrawn))
    return " ".join(parts)


def check_unchanged(fs: FileSystem, model_dir: str, expected: str, step: str) -> str:
    """Raises unless the served model is still the one the run started with.

    A step cached on the identity must compare with exactly that model: a push or rollback
    in between would make its cached result stand for the wrong one.

    Args:
      fs: The filesystem.
      model_dir: `<serving_base>/<model_name>`.
      expected: The identity the run was given (KFP: the `ServedModel` task's output).
      step: The step checking, for the message.

    Returns:
      The identity.

    Raises:
      ServedModelChangedError: Naming both identities.
    """
    now = served_model_identity(fs, model_dir)
    if now != expected:
        raise ServedModelChangedError(
            f"{step}: the model served from {model_dir} changed during this run (at the start: "
            f"{expected!r}; now: {now!r}), probably a push or rollback by another run. Run the "
            "pipeline again: it then compares with what is served now."
        )
    return now
