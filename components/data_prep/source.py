"""The source data of a run: which CSV files a URI names, a fingerprint of their bytes, the
rules every source file's header and records must follow, and a pre-flight check of them.

Stdlib and `tf.io.gfile` only, so the local runner's entry point and the KFP fingerprint step
can call it without importing TFX. `tf.io.gfile` reads every filesystem TF knows (local paths,
`gs://`), which is what the DataPrep executor reads with too; it is imported where it is used,
so `preflight` (stdlib only) answers before any heavy import.
"""

import csv
import hashlib
import importlib.util
import json
import os
from collections.abc import Iterator, Sequence
from typing import BinaryIO

TAXI_SAMPLE = os.path.join("examples", "chicago_taxi_pipeline", "data", "simple")
_CHUNK = 1 << 20
DEFAULT_TIME_COLUMN = "trip_start_timestamp"
# Records after the header that `preflight` checks in each file.
PREFLIGHT_ROWS = 1000
# A UTF-8 byte-order mark as the decoded text starts with it (spreadsheet exports write one).
BYTE_ORDER_MARK = "\ufeff"
# Characters a header name cannot carry: TFX's CsvExampleGen reads DataPrep's header line by
# splitting it at commas (`tfx.utils.io_utils.load_csv_column_names`), without CSV quoting.
_HEADER_NAME_BREAKERS = (",", '"', "\n", "\r")
_INT64 = 1 << 63


class DataError(ValueError):
    """The source data cannot be prepared; the message names the file (and line)."""


def default_source() -> str:
    """Returns the directory of the Chicago taxi sample shipped inside the installed tfx wheel.

    Raises:
      FileNotFoundError: If tfx is not installed or has no such sample.
    """
    # The package's location without importing it, so `preflight(default_source())` stays
    # free of heavy imports.
    spec = importlib.util.find_spec("tfx")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("tfx is not installed: no taxi sample to default to")
    path = os.path.join(next(iter(spec.submodule_search_locations)), TAXI_SAMPLE)
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
    import tensorflow as tf  # Here, not at import: `preflight` must not load TensorFlow.

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
    import tensorflow as tf  # Here, not at import: `preflight` must not load TensorFlow.

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


def header_names(path: str, record: Sequence[str]) -> list[str]:
    """The column names of a source file's header record, checked.

    A UTF-8 byte-order mark before the first name is dropped (`\\ufeffpickup_community_area`
    is `pickup_community_area`). Every name must be non-empty, unique (otherwise the last of
    two same-named columns silently wins in every example) and free of commas, quotes and line
    ends (ExampleGen reads the header DataPrep writes by splitting it at commas).

    Args:
      path: The file, for messages.
      record: The header as `csv.reader` parsed it.

    Raises:
      DataError: Naming the file and the column.
    """
    names = list(record)
    if names and names[0].startswith(BYTE_ORDER_MARK):
        names[0] = names[0][len(BYTE_ORDER_MARK) :]
    positions: dict[str, list[int]] = {}
    for position, name in enumerate(names, start=1):
        if not name:
            raise DataError(f"{path}: header column {position} has no name; header: {names}")
        if any(c in name for c in _HEADER_NAME_BREAKERS):
            raise DataError(
                f"{path}: header column {position} name {name!r} holds a comma, quote or line "
                "end, which ExampleGen cannot read back (it splits the header at commas)"
            )
        positions.setdefault(name, []).append(position)
    for name, found in positions.items():
        if len(found) > 1:
            raise DataError(
                f"{path}: column {name!r} appears {len(found)} times in the header (columns "
                f"{', '.join(map(str, found))}); each column needs its own name"
            )
    return names


def check_header(
    path: str, names: list[str], time_column: str, first: tuple[str, list[str]] | None
) -> None:
    """Checks a file's (checked) header against the time column and the first file's header.

    Args:
      path: The file.
      names: `header_names` of its header.
      time_column: The column ordering the rows.
      first: (path, header) of the source's first file, or None for the first file itself.

    Raises:
      DataError: If the time column is missing, or the header differs from the first file's.
    """
    if first is None:
        if time_column not in names:
            raise DataError(f"{path} has no {time_column!r} column; columns: {names}")
    elif names != first[1]:
        raise DataError(f"{path} header {names} differs from {first[0]} header {first[1]}")


def record_timestamp(
    path: str, record: int, row: Sequence[str], header: Sequence[str], time_column: str
) -> int:
    """The integer Unix time of one record, checked for its field count and range.

    Args:
      path: The file, for messages.
      record: The record's number in the file (the header is 1).
      row: The record's fields.
      header: The file's column names.
      time_column: The column ordering the rows (in `header`).

    Raises:
      DataError: Naming file and record: a wrong field count, a non-integer time, or one
        outside int64.
    """
    if len(row) != len(header):
        raise DataError(f"{path}:{record}: {len(row)} fields, expected {len(header)} ({header})")
    value = row[header.index(time_column)]
    try:
        timestamp = int(value)
    except ValueError as e:
        raise DataError(
            f"{path}:{record}: {time_column} must be an integer Unix time, got {value!r}"
        ) from e
    if not -_INT64 <= timestamp < _INT64:
        raise DataError(
            f"{path}:{record}: {time_column} {value!r} is outside the 64-bit integer range"
        )
    return timestamp


def _local_csv_files(source: str) -> list[str]:
    """`list_source_files` for a local path, with the standard library (same messages)."""
    if not source:
        raise DataError("No source given: expected a CSV file or a directory of CSV files")
    if os.path.isdir(source):
        files = sorted(
            os.path.join(source, name)
            for name in os.listdir(source)
            if name.endswith(".csv") and not os.path.isdir(os.path.join(source, name))
        )
        if not files:
            raise DataError(f"No .csv files in {source}")
        return files
    if not os.path.exists(source):
        raise DataError(f"Source {source} does not exist: expected a CSV file or a directory")
    return [source]


class _BinaryLines:
    """A file's lines as DataPrep reads them: split at `\\n` only, every `\\r` dropped, UTF-8."""

    def __init__(self, path: str, f: BinaryIO) -> None:
        self._path = path
        self._f = f
        self._first = True

    def __iter__(self) -> "_BinaryLines":
        return self

    def __next__(self) -> str:
        line = self._f.readline()
        if not line:
            raise StopIteration
        try:
            text = line.replace(b"\r", b"").decode("utf-8")
        except UnicodeDecodeError as e:
            raise DataError(f"{self._path} is not UTF-8 text: {e}") from e
        if self._first:
            self._first = False
            text = text.removeprefix(BYTE_ORDER_MARK)
        return text


def preflight(
    source: str, time_column: str = DEFAULT_TIME_COLUMN, rows: int = PREFLIGHT_ROWS
) -> list[str]:
    """Checks a source's files, headers and first records in about a second, before heavy imports.

    The same rules and messages as DataPrep (`time_split.prepare_time_split`), on each file's
    header and its first `rows` records: a missing source or file, an empty file, bytes that
    are not UTF-8, a repeated, empty or unreadable column name, a missing time column, a header
    differing between files, a wrong field count, a time that is not an int64 integer. Later
    records are checked by DataPrep itself. Standard library only (no TensorFlow, no TFX).

    Args:
      source: A CSV file or a directory of CSV files. Object-store URIs (`gs://...`) are not
        readable without TensorFlow: they are left to DataPrep (nothing is checked).
      time_column: The column ordering the rows.
      rows: Records after the header to check in each file.

    Returns:
      The files checked (empty for an object-store URI).

    Raises:
      DataError: The first problem found, naming the file (and record).
    """
    if "://" in source:
        return []
    files = _local_csv_files(source)
    first: tuple[str, list[str]] | None = None
    for path in files:
        with open(path, "rb") as f:
            records = csv.reader(_BinaryLines(path, f))
            record = _next_record(path, records, 0)
            if record is None:
                raise DataError(f"{path} is empty: expected a header line")
            header = header_names(path, record)
            check_header(path, header, time_column, first)
            for number in range(2, rows + 2):
                row = _next_record(path, records, number - 1)
                if row is None:
                    break
                record_timestamp(path, number, row, header, time_column)
        first = first or (path, header)
    return files


def _next_record(path: str, records: Iterator[list[str]], read: int) -> list[str] | None:
    try:
        return next(records, None)
    except csv.Error as e:
        raise DataError(f"{path}:{read + 1}: {e}") from e
