"""The time split: every eval row strictly later than every train row, clear errors on bad CSVs.

Evaluation rows lie strictly after every training row in time, so the model is never judged on
trips that happened before some it trained on. No TFX here: the DataPrep executor calls
`prepare_time_split` on its output directory.
"""

import csv
import dataclasses
import hashlib
import io
import os

import tensorflow as tf

from components.data_prep.source import DataError, fingerprint_of, source_file_hashes

TRAIN_SPLIT = "train"
EVAL_SPLIT = "eval"
DATA_FILE = "data.csv"
DEFAULT_TIME_COLUMN = "trip_start_timestamp"

# One row: (timestamp, position in the input, fields). The position keeps equal timestamps in
# input order, so the split is deterministic.
_Row = tuple[int, int, list[str]]


@dataclasses.dataclass(frozen=True)
class PreparedSplit:
    """What `prepare_time_split` wrote.

    Attributes:
      data_version: Hash of the written train and eval CSVs (what the model saw).
      source_fingerprint: `fingerprint_source` of the files read.
      source_files: (path, SHA-256) of each source file read.
      train_rows: Rows in `train/data.csv`.
      eval_rows: Rows in `eval/data.csv`.
      train_time_range: (first, last) timestamp of the train rows.
      eval_time_range: (first, last) timestamp of the eval rows; first > train's last.
    """

    data_version: str
    source_fingerprint: str
    source_files: tuple[tuple[str, str], ...]
    train_rows: int
    eval_rows: int
    train_time_range: tuple[int, int]
    eval_time_range: tuple[int, int]


def read_rows(files: list[str], time_column: str) -> tuple[list[str], list[_Row]]:
    """Reads CSV files sharing one header, checking every line.

    Raises:
      DataError: Naming the file (and line) of an empty file, a missing time column, a header
        differing from the first file's, a wrong field count or a non-integer timestamp.
    """
    header: list[str] | None = None
    rows: list[_Row] = []
    for path in files:
        with tf.io.gfile.GFile(path) as f:
            reader = csv.reader(f)
            file_header = next(reader, None)
            if file_header is None:
                raise DataError(f"{path} is empty: expected a header line")
            if header is None:
                header = file_header
                if time_column not in header:
                    raise DataError(f"{path} has no {time_column!r} column; columns: {header}")
            elif file_header != header:
                raise DataError(
                    f"{path} header {file_header} differs from {files[0]} header {header}"
                )
            time_index = header.index(time_column)
            for line_number, row in enumerate(reader, start=2):
                if len(row) != len(header):
                    raise DataError(
                        f"{path}:{line_number}: {len(row)} fields, "
                        f"expected {len(header)} ({header})"
                    )
                try:
                    timestamp = int(row[time_index])
                except ValueError as e:
                    raise DataError(
                        f"{path}:{line_number}: {time_column} must be an integer Unix time, "
                        f"got {row[time_index]!r}"
                    ) from e
                rows.append((timestamp, len(rows), row))
    if header is None:
        raise DataError("No source files to read")
    return header, rows


def split_by_time(
    rows: list[_Row], *, eval_fraction: float, max_rows: int | None, where: str, time_column: str
) -> tuple[list[_Row], list[_Row]]:
    """Sorts rows by time, optionally thins them evenly, and cuts off the newest for eval.

    Raises:
      DataError: If the rows cannot leave both parts non-empty with eval strictly later.
    """
    rows = sorted(rows, key=lambda r: (r[0], r[1]))
    if max_rows is not None and len(rows) > max_rows:
        step = len(rows) / max_rows
        rows = [rows[int(i * step)] for i in range(max_rows)]
    cut = round(len(rows) * (1.0 - eval_fraction))
    # Rows sharing the cutoff timestamp all stay in train, so eval is strictly later.
    while 0 < cut < len(rows) and rows[cut][0] == rows[cut - 1][0]:
        cut += 1
    if cut <= 0 or cut >= len(rows):
        raise DataError(
            f"Cannot split {len(rows)} rows of {where} by {time_column} into non-empty train "
            f"and eval parts with eval_fraction={eval_fraction}"
        )
    return rows[:cut], rows[cut:]


def _csv_bytes(header: list[str], rows: list[_Row]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(r[2] for r in rows)
    return buffer.getvalue().encode()


def prepare_time_split(
    source_uri: str,
    dest_dir: str,
    *,
    eval_fraction: float,
    max_rows: int | None = None,
    time_column: str = DEFAULT_TIME_COLUMN,
) -> PreparedSplit:
    """Writes `<dest_dir>/train/data.csv` and `<dest_dir>/eval/data.csv` from the source CSVs.

    Everything is read and checked before anything is written, so bad input leaves `dest_dir`
    untouched.

    Args:
      source_uri: A CSV file or a directory of CSV files sharing one header.
      dest_dir: Output directory (the DataPrep artifact's URI).
      eval_fraction: Approximate share of the newest rows used for evaluation.
      max_rows: Keep an evenly spaced subset of this many rows (spanning the whole period).
      time_column: Integer Unix-time column ordering the rows.

    Returns:
      What was written.

    Raises:
      DataError: If a file is missing, empty or malformed, lacks the time column, or the data is
        too small or too concentrated in time to leave both splits non-empty.
    """
    hashes = source_file_hashes(source_uri)
    header, rows = read_rows([path for path, _ in hashes], time_column)
    train, evaluation = split_by_time(
        rows,
        eval_fraction=eval_fraction,
        max_rows=max_rows,
        where=source_uri,
        time_column=time_column,
    )
    written = {TRAIN_SPLIT: _csv_bytes(header, train), EVAL_SPLIT: _csv_bytes(header, evaluation)}
    version = hashlib.sha256()
    for split, content in written.items():
        tf.io.gfile.makedirs(os.path.join(dest_dir, split))
        with tf.io.gfile.GFile(os.path.join(dest_dir, split, DATA_FILE), "wb") as f:
            f.write(content)
        version.update(hashlib.sha256(content).digest())
    return PreparedSplit(
        data_version=version.hexdigest()[:12],
        source_fingerprint=fingerprint_of(source_uri, hashes),
        source_files=tuple(hashes),
        train_rows=len(train),
        eval_rows=len(evaluation),
        train_time_range=(train[0][0], train[-1][0]),
        eval_time_range=(evaluation[0][0], evaluation[-1][0]),
    )
