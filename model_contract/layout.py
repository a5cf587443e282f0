"""Names in a TF Serving model directory `<base>/<model_name>/<version>/`, as pure functions.

TF Serving's file-system source (`tensorflow_serving/sources/storage_path/
file_system_storage_path_source.cc`) takes every child whose name parses as an integer as a
version and ignores the rest; work in progress and withdrawn versions therefore live under
non-numeric names. A version is complete once `saved_model.pb` is in it: TF's saver writes that
file last (`tensorflow/python/saved_model/save.py`), TFX's Pusher copies it last, and this
contract's readers require it.
"""

SAVED_MODEL_FILE = "saved_model.pb"
ASSETS_EXTRA_DIR = "assets.extra"
# Replayed by TF Serving before a version is AVAILABLE (`servables/tensorflow/
# saved_model_warmup_util.cc`); at most MAX_WARMUP_RECORDS PredictionLog records are read.
WARMUP_FILE = f"{ASSETS_EXTRA_DIR}/tf_serving_warmup_requests"
MAX_WARMUP_RECORDS = 1000
# Written by the Pusher beside each version: see `model_contract.model_dir.push_version`.
MANIFEST_FILE = f"{ASSETS_EXTRA_DIR}/push_manifest.json"

STAGING_PREFIX = ".tmp-"
ROLLED_BACK_PREFIX = "_rolled_back_"

# Method names TF Serving's APIs check on a SignatureDef (`servables/tensorflow/
# classifier.cc`, `regressor.cc`, `predict_util.cc`).
PREDICT_METHOD = "tensorflow/serving/predict"
CLASSIFY_METHOD = "tensorflow/serving/classify"
REGRESS_METHOD = "tensorflow/serving/regress"
# Signature key -> method name of the client-facing signatures of docs/model-contract.md.
SIGNATURE_METHODS = {
    "serving_default": PREDICT_METHOD,
    "classify": CLASSIFY_METHOD,
    "regress": REGRESS_METHOD,
}


def parse_version(name: str) -> int | None:
    """Returns the version a child name stands for, or None when TF Serving ignores it.

    Args:
      name: A child of the model directory (a trailing `/`, as object stores list
        directories, is allowed).

    Returns:
      The version for an all-digit name, else None (staging, rolled back, anything else).
    """
    name = name.rstrip("/")
    return int(name) if name.isascii() and name.isdigit() else None


def staging_name(version: int, token: str) -> str:
    """Returns the hidden, non-numeric name a version is written under before it is published."""
    if not token or "/" in token:
        raise ValueError(f"staging token must be a non-empty name without '/', got {token!r}")
    return f"{STAGING_PREFIX}{version}-{token}"


def staging_version(name: str) -> int | None:
    """Returns the version a staging child name was created for, or None if not staging.

    The version is the Unix time the push started (`next_version`), or a little later when
    the clock was behind the highest taken number, so `now - version` never overstates how
    long ago the push began: a staging copy's age is read from its name, which works on
    object stores (no directory mtimes) and needs no lease file.
    """
    name = name.rstrip("/")
    if not name.startswith(STAGING_PREFIX):
        return None
    head, sep, token = name[len(STAGING_PREFIX) :].partition("-")
    return parse_version(head) if sep and token else None


def rolled_back_name(version: int) -> str:
    """Returns the non-numeric name a withdrawn version is kept under (for forensics)."""
    return f"{ROLLED_BACK_PREFIX}{version}"


def withdrawn_version(name: str) -> int | None:
    """Returns the version a rolled-back child name stands for, or None."""
    name = name.rstrip("/")
    if not name.startswith(ROLLED_BACK_PREFIX):
        return None
    return parse_version(name[len(ROLLED_BACK_PREFIX) :])


def next_version(taken: list[int], now: float) -> int:
    """Returns a Unix-time version strictly newer than every version number ever used.

    TF Serving orders versions numerically and serves the highest, so a new version must be
    higher than every existing one, including withdrawn ones (reusing a number would bring a
    rolled-back model's number back for a different model).

    Args:
      taken: Version numbers in use: published, incomplete and rolled back.
      now: Current Unix time in seconds.

    Returns:
      `int(now)`, or one more than the highest taken number when the clock is not ahead of it.
    """
    return max([int(now), *(v + 1 for v in taken)])
