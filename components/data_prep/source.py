"""The source data of a run: which CSV files a URI names and a fingerprint of their bytes.

Stdlib and `tf.io.gfile` only, so the local runner's entry point and the KFP fingerprint step
can call it without importing TFX. `tf.io.gfile` reads every filesystem TF knows (local paths,
`gs://`), which is what the DataPrep executor reads with too.
"""

import hashlib
import json
import os

import tensorflow as tf

TAXI_SAMPLE = os.path.join("examples", "chicago_taxi_pipeline", "data", "simple")
_CHUNK = 1 << 20


class DataError(ValueError):
    """The source data cannot be prepared; the message names the file (and line)."""


def default_source() -> str:
    """Returns the directory of the Chicago taxi sample shipped inside the installed tfx wheel.

    Raises:
      FileNotFoundError: If the installed tfx has no such sample.
    """
    import tfx  # Local import: only this entry needs the package location.

    path = os.path.join(os.path.dirname(tfx.__file__), TAXI_SAMPLE)
    if not os.path.isfile(os.path.join(path, "data.csv")):
        raise FileNotFoundError(f"The installed tfx wheel has no taxi sample at {path}")
    return path


def list_source_files(uri: str) -> list[str]:
    """Lists the CSV files of a source: the file itself, or a directory's `*.csv`, sorted.

    Args:
      uri: A CSV file or a directory of CSV files (any filesystem `tf.io.gfile` reads).

    Returns:
      The files, sorted by name.

    Raises:
      DataError: If the URI does not exist, or a directory holds no `.csv` file.
    """
    if not uri:
        raise DataError("No source given: expected a CSV file or a directory of CSV files")
    if tf.io.gfile.isdir(uri):
        files = sorted(
            os.path.join(uri, name)
            for name in tf.io.gfile.listdir(uri)
            if name.endswith(".csv") and not tf.io.gfile.isdir(os.path.join(uri, name))
        )
        if not files:
            raise DataError(f"No .csv files in {uri}")
        return files
    if not tf.io.gfile.exists(uri):
        raise DataError(f"Source {uri} does not exist: expected a CSV file or a directory")
    return [uri]


def file_sha256(path: str) -> str:
    """Returns the SHA-256 hex digest of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with tf.io.gfile.GFile(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def source_file_hashes(uri: str) -> list[tuple[str, str]]:
    """Returns (file path, SHA-256 of its bytes) for every file `list_source_files` lists."""
    return [(path, file_sha256(path)) for path in list_source_files(uri)]


def fingerprint_of(uri: str, hashes: list[tuple[str, str]]) -> str:
    """Combines file names (relative to the source) and content hashes into one fingerprint.

    Names are relative so that the same files copied elsewhere keep their fingerprint; the
    location itself is a separate parameter of every run.
    """
    base = uri.rstrip("/")
    entries = [
        [os.path.relpath(path, base) if path != uri else os.path.basename(path), sha]
        for path, sha in hashes
    ]
    return hashlib.sha256(json.dumps(entries).encode()).hexdigest()


def fingerprint_source(uri: str) -> str:
    """Returns a hash of the source files' names and bytes (64 hex digits).

    It changes exactly when a file is added, removed, renamed or edited, so an orchestrator's
    cache key that includes it is invalidated by new data and by nothing else.

    Raises:
      DataError: See `list_source_files`.
    """
    return fingerprint_of(uri, source_file_hashes(uri))


def preflight(uri: str) -> None:
    """Checks that every source file has a header row without repeated names, before the run.

    A quick look (one line per file) so that a data error answers before the pipeline is built.

    Raises:
      DataError: If the source has no CSV file, or a file is empty or repeats a column name.
    """
    import csv
    import io

    for path in list_source_files(uri):
        with tf.io.gfile.GFile(path, "rb") as f:
            first = f.readline()
        text = first.decode("utf-8", errors="replace").lstrip("\ufeff")
        if not text.strip():
            raise DataError(f"{path}: line 1: no header row (the file is empty)")
        header = next(csv.reader(io.StringIO(text)))
        repeated = sorted({name for name in header if header.count(name) > 1})
        if repeated:
            raise DataError(f"{path}: line 1: repeated column names {repeated}")
