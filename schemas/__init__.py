"""Curated, reviewed data schemas: the one source of truth for features (depends on nothing)."""

import pathlib

_SCHEMAS_DIR = pathlib.Path(__file__).resolve().parent


def schema_path(dataset: str = "taxi") -> str:
    """Returns the path of a curated schema file.

    Args:
      dataset: Name of the data set folder under `schemas/`.

    Returns:
      Absolute path of `schemas/<dataset>/schema.pbtxt`.

    Raises:
      FileNotFoundError: If no curated schema exists for `dataset`.
    """
    path = _SCHEMAS_DIR / dataset / "schema.pbtxt"
    if not path.is_file():
        raise FileNotFoundError(f"No curated schema for data set {dataset!r}: expected {path}")
    return str(path)
