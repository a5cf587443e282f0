"""Data preparation: a versioned, time-ordered train/eval split of the source CSVs.

Evaluation rows lie strictly after every training row in time, so the model is never judged
on trips that happened before some it trained on. Each prepared copy is content-addressed
(its directory name carries a hash of the source bytes and the split settings), written once,
and described by a manifest, so every run names exactly which data it used.
"""

import csv
import dataclasses
import hashlib
import io
import json
import os
import uuid

import tensorflow as tf

TAXI_SAMPLE = os.path.join("examples", "chicago_taxi_pipeline", "data", "simple")
MANIFEST = "manifest.json"


class DataError(ValueError):
    """The source data cannot be prepared; the message names the file and line."""


@dataclasses.dataclass(frozen=True)
class PreparedData:
    """A prepared, versioned copy of the data.

    Attributes:
      root: Directory holding `train/data.csv`, `eval/data.csv` and `manifest.json`.
      version: Content hash naming this copy.
      train_rows: Rows in the train split.
      eval_rows: Rows in the eval split.
      cutoff_timestamp: Latest training timestamp; every eval row is strictly later.
      source_files: Source CSV files read.
    """

    root: str
    version: str
    train_rows: int
    eval_rows: int
    cutoff_timestamp: int
    source_files: tuple[str, ...]


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


def source_files(source: str) -> list[str]:
    """Lists the CSV files of a source: the file itself, or a directory's `*.csv`, sorted.

    Raises:
      DataError: If a directory holds no CSV file.
    """
    if tf.io.gfile.isdir(source):
        files = sorted(
            os.path.join(source, f) for f in tf.io.gfile.listdir(source) if f.endswith(".csv")
        )
    else:
        files = [source]
    if not files:
        raise DataError(f"No .csv files in {source}")
    return files


def _read_rows(
    files: list[str], time_column: str
) -> tuple[list[str], list[tuple[int, int, list[str]]]]:
    header: list[str] | None = None
    rows: list[tuple[int, int, list[str]]] = []
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
    assert header is not None
    return header, rows


def _fingerprint(files: list[str], params: dict) -> str:
    digest = hashlib.sha256(json.dumps(params, sort_keys=True).encode())
    for path in files:
        with tf.io.gfile.GFile(path, "rb") as f:
            digest.update(hashlib.sha256(f.read()).digest())
    return digest.hexdigest()[:12]


def _write_csv(path: str, header: list[str], rows: list[list[str]]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    tf.io.gfile.makedirs(os.path.dirname(path))
    with tf.io.gfile.GFile(path, "w") as f:
        f.write(buffer.getvalue())


def prepare_time_split(
    source: str,
    dest_root: str,
    *,
    time_column: str = "trip_start_timestamp",
    eval_fraction: float = 0.2,
    max_rows: int | None = None,
    name: str = "taxi",
) -> PreparedData:
    """Writes a time-ordered train/eval split of the source CSVs, once per content version.

    Args:
      source: A CSV file or a directory of CSV files sharing one header.
      dest_root: Parent directory of prepared copies.
      time_column: Integer Unix-time column ordering the rows.
      eval_fraction: Approximate share of the newest rows used for evaluation.
      max_rows: Keep an evenly spaced subset of this many rows (spanning the whole period).
      name: Prefix of the prepared directory name.

    Returns:
      The prepared copy (reused, not rewritten, when it already exists).

    Raises:
      DataError: If a file is empty, malformed, lacks the time column, or the data is too
        small or too concentrated in time to leave both splits non-empty.
    """
    files = source_files(source)
    params = {"time_column": time_column, "eval_fraction": eval_fraction, "max_rows": max_rows}
    version = f"{name}-{_fingerprint(files, params)}"
    root = os.path.join(dest_root, version)
    manifest_path = os.path.join(root, MANIFEST)
    if tf.io.gfile.exists(manifest_path):
        with tf.io.gfile.GFile(manifest_path) as f:
            manifest = json.load(f)
        return PreparedData(
            root=root,
            version=version,
            train_rows=manifest["train_rows"],
            eval_rows=manifest["eval_rows"],
            cutoff_timestamp=manifest["cutoff_timestamp"],
            source_files=tuple(manifest["source_files"]),
        )

    header, rows = _read_rows(files, time_column)
    rows.sort(key=lambda r: (r[0], r[1]))
    if max_rows is not None and len(rows) > max_rows:
        step = len(rows) / max_rows
        rows = [rows[int(i * step)] for i in range(max_rows)]
    cut = round(len(rows) * (1.0 - eval_fraction))
    # Rows sharing the cutoff timestamp all stay in train, so eval is strictly later.
    while 0 < cut < len(rows) and rows[cut][0] == rows[cut - 1][0]:
        cut += 1
    if cut <= 0 or cut >= len(rows):
        raise DataError(
            f"Cannot split {len(rows)} rows of {source} by {time_column} into non-empty train "
            f"and eval parts with eval_fraction={eval_fraction}"
        )
    train = [r[2] for r in rows[:cut]]
    evaluation = [r[2] for r in rows[cut:]]
    manifest = {
        "version": version,
        "source_files": files,
        "time_column": time_column,
        "eval_fraction": eval_fraction,
        "max_rows": max_rows,
        "train_rows": len(train),
        "eval_rows": len(evaluation),
        "cutoff_timestamp": rows[cut - 1][0],
        "train_time_range": [rows[0][0], rows[cut - 1][0]],
        "eval_time_range": [rows[cut][0], rows[-1][0]],
    }
    # Write under a temporary name and rename, so a half-written copy is never reused.
    staging = os.path.join(dest_root, f".tmp-{version}-{uuid.uuid4().hex[:8]}")
    _write_csv(os.path.join(staging, "train", "data.csv"), header, train)
    _write_csv(os.path.join(staging, "eval", "data.csv"), header, evaluation)
    with tf.io.gfile.GFile(os.path.join(staging, MANIFEST), "w") as f:
        json.dump(manifest, f, indent=2)
    tf.io.gfile.rename(staging, root, overwrite=False)
    return PreparedData(
        root=root,
        version=version,
        train_rows=len(train),
        eval_rows=len(evaluation),
        cutoff_timestamp=manifest["cutoff_timestamp"],
        source_files=tuple(files),
    )
