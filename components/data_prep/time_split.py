"""The time split: every eval row strictly later than every train row, clear errors on bad CSVs.

Evaluation rows lie strictly after every training row in time, so the model is never judged on
trips that happened before some it trained on. No TFX here: the DataPrep executor calls
`prepare_time_split` on its output directory.

The split streams: rows are read in chunks of `chunk_rows`, each chunk is sorted and, unless it
is the last, spilled to a local temporary file; the sorted runs are then merged straight into
the output files (an external merge sort), so memory follows `chunk_rows`, not the data.
"""

import array
import bisect
import codecs
import contextlib
import csv
import dataclasses
import hashlib
import heapq
import itertools
import mmap
import operator
import os
import pickle
import tempfile
from collections.abc import Iterable, Iterator, Sequence

import tensorflow as tf

from components.data_prep.source import (
    BYTE_ORDER_MARK,
    DEFAULT_TIME_COLUMN,
    DataError,
    check_header,
    fingerprint_of,
    header_names,
    list_source_files,
    record_timestamp,
)

__all__ = ["DEFAULT_TIME_COLUMN", "PreparedSplit", "prepare_time_split"]

TRAIN_SPLIT = "train"
EVAL_SPLIT = "eval"
DATA_FILE = "data.csv"
# Rows sorted in memory at once. About 60 MB of Python objects for taxi rows (~130 bytes of
# text each); the peak RSS of the whole split is about twice that plus the merge buffers.
DEFAULT_CHUNK_ROWS = 200_000

# Bytes read from a source file at a time.
_READ_BYTES = 4 << 20
# Rows per record of a spilled run, and per write to an output file.
_BATCH_ROWS = 1024
# Spilled runs merged at once; more runs are first merged in groups of this many, so open
# files and merge buffers stay bounded (64 x 1024 rows).
_MERGE_FAN_IN = 64
_INT64 = 1 << 63
# Pickled lists load several times faster than marshalled ones (measured: 12 vs 90 ms for
# 100 k taxi rows).
_PICKLE_PROTOCOL = 5

# One row: (timestamp, the row as the output writes it, without its line end). Rows with equal
# timestamps keep their input order: chunks are sorted stably and merged stably in input order.
_Row = tuple[int, str]
_count_commas = operator.methodcaller("count", ",")


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
      sorted_runs: Sorted runs merged: 1 when all rows fit in one chunk, else the runs spilled
        to temporary files plus the last chunk.
    """

    data_version: str
    source_fingerprint: str
    source_files: tuple[tuple[str, str], ...]
    train_rows: int
    eval_rows: int
    train_time_range: tuple[int, int]
    eval_time_range: tuple[int, int]
    sorted_runs: int


class _Echo:
    """A `csv.writer` target whose `write` returns the line, so `writerow` returns it."""

    @staticmethod
    def write(line: str) -> str:
        return line


_CSV_LINE = csv.writer(_Echo(), lineterminator="\n")


class _Lines:
    """One source file's lines exactly as iterating `tf.io.gfile.GFile(path)` yields them.

    GFile's `readline` (tensorflow/python/lib/io/file_io.py) reads with `ReadLineHelper` of
    tsl/lib/io/buffered_inputstream.cc, which splits at `\\n` only, keeps it, and drops every
    `\\r` (inside quoted fields too); removing `\\r` from the bytes before decoding
    is the same (UTF-8 never uses the byte 0x0D inside a character). The file is read in large
    blocks and the SHA-256 of its bytes is computed on the way, so the fingerprint describes
    exactly the bytes split. `next_text` hands out whole remaining lines as one string for the
    fast path; iterating yields single lines for `csv.reader`.
    """

    def __init__(self, f: tf.io.gfile.GFile, path: str) -> None:
        self.sha256 = hashlib.sha256()
        self._f = f
        self._path = path
        self._decoder = codecs.getincrementaldecoder("utf-8")()
        self._carry = ""
        self._text = ""
        self._pos = 0
        self._eof = False
        self._started = False

    def _decode(self, data: bytes, final: bool) -> str:
        try:
            text = self._decoder.decode(data.replace(b"\r", b""), final)
        except UnicodeDecodeError as e:
            raise DataError(f"{self._path} is not UTF-8 text: {e}") from e
        if not self._started and text:
            # A byte-order mark opening the file is not part of the first column's name.
            self._started = True
            text = text.removeprefix(BYTE_ORDER_MARK)
        return text

    def _fill(self) -> bool:
        """Makes the next block of whole lines current; False at the end of the file."""
        while not self._eof:
            data = self._f.read(_READ_BYTES)
            if data:
                self.sha256.update(data)
                text = self._carry + self._decode(data, final=False)
                end = text.rfind("\n") + 1
                self._carry, text = text[end:], text[:end]
            else:
                self._eof = True
                text, self._carry = self._carry + self._decode(b"", final=True), ""
            if text:
                self._text, self._pos = text, 0
                return True
        return False

    def __iter__(self) -> "_Lines":
        return self

    def __next__(self) -> str:
        if self._pos >= len(self._text) and not self._fill():
            raise StopIteration
        end = self._text.find("\n", self._pos) + 1 or len(self._text)
        line = self._text[self._pos : end]
        self._pos = end
        return line

    def next_text(self) -> str | None:
        """The following whole lines (the file's last may lack `\\n`); None at the end."""
        if self._pos >= len(self._text) and not self._fill():
            return None
        text = self._text[self._pos :]
        self._pos = len(self._text)
        return text

    def unread(self, text: str) -> None:
        """Puts back what `next_text` returned, so iterating starts with it."""
        self._text, self._pos = text, 0


class _Runs:
    """Rows sorted by time in runs of `chunk_rows`: spilled to local files, the last in memory.

    Spill files go to a `tempfile` directory (it honours `TMPDIR`; never the destination, which
    may be `gs://`), removed when `stack` closes, on success or error. A run is a sequence of
    pickled batches (timestamps, texts) plus a file of its timestamps as int64, read by
    memory-mapping for the order statistics of the cut.
    """

    def __init__(self, chunk_rows: int, stack: contextlib.ExitStack) -> None:
        self.rows = 0
        self.lowest = _INT64
        self.highest = -_INT64
        self._chunk_rows = chunk_rows
        self._stack = stack
        self._stamps: list[int] = []
        self._texts: list[str] = []
        self._spilled: list[str] = []
        self._directory: str | None = None
        self._written = 0

    def add(self, stamps: list[int], texts: list[str]) -> None:
        """Adds rows in input order."""
        if not stamps:
            return
        self.rows += len(stamps)
        self.lowest = min(self.lowest, min(stamps))
        self.highest = max(self.highest, max(stamps))
        start = 0
        while start < len(stamps):
            end = start + self._chunk_rows - len(self._stamps)
            self._stamps.extend(stamps[start:end])
            self._texts.extend(texts[start:end])
            start = end
            if len(self._stamps) >= self._chunk_rows:
                stamps_run, texts_run = self._sorted_chunk()
                self._spilled.append(self._write_run(_batches(stamps_run, texts_run)))

    def _sorted_chunk(self) -> tuple[list[int], list[str]]:
        # sorted() is stable: equal timestamps keep input order.
        order = sorted(range(len(self._stamps)), key=self._stamps.__getitem__)
        stamps = list(map(self._stamps.__getitem__, order))
        texts = list(map(self._texts.__getitem__, order))
        self._stamps, self._texts = [], []
        return stamps, texts

    def _write_run(self, batches: Iterable[tuple[Sequence[int], Sequence[str]]]) -> str:
        if self._directory is None:
            self._directory = self._stack.enter_context(
                tempfile.TemporaryDirectory(prefix="data_prep_")
            )
        path = os.path.join(self._directory, f"run-{self._written}")
        self._written += 1
        with open(path, "wb") as rows, open(path + ".stamps", "wb") as stamps:
            for batch_stamps, batch_texts in batches:
                pickle.dump((list(batch_stamps), list(batch_texts)), rows, _PICKLE_PROTOCOL)
                array.array("q", batch_stamps).tofile(stamps)
        return path

    @staticmethod
    def _read_run(path: str) -> Iterator[_Row]:
        with open(path, "rb") as f:
            while True:
                try:
                    stamps, texts = pickle.load(f)  # Our own file, written just before.
                except EOFError:
                    return
                yield from zip(stamps, texts, strict=True)

    def _stamps_of(self, path: str) -> Sequence[int]:
        with open(path + ".stamps", "rb") as f:
            mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        self._stack.callback(mapped.close)
        view = memoryview(mapped).cast("q")
        self._stack.callback(view.release)  # Runs before mapped.close (the stack is LIFO).
        return view

    def finish(self) -> tuple[list[Iterator[_Row]], list[Sequence[int]]]:
        """Ends the read: returns the runs (in input order) and their sorted timestamps."""
        stamps, texts = self._sorted_chunk()
        # More runs than the fan-in are merged in consecutive groups first; merging neighbours
        # keeps equal timestamps in input order.
        while len(self._spilled) > _MERGE_FAN_IN:
            groups = [
                self._spilled[i : i + _MERGE_FAN_IN]
                for i in range(0, len(self._spilled), _MERGE_FAN_IN)
            ]
            self._spilled = []
            for group in groups:
                self._spilled.append(
                    self._write_run(_merged_batches([self._read_run(p) for p in group]))
                )
                for path in group:  # Merged: free the disk space.
                    os.remove(path)
                    os.remove(path + ".stamps")
        rows = [self._read_run(path) for path in self._spilled]
        sorted_stamps = [self._stamps_of(path) for path in self._spilled]
        if stamps:
            rows.append(zip(stamps, texts, strict=True))
            sorted_stamps.append(stamps)
        return rows, sorted_stamps


def _batches(stamps: list[int], texts: list[str]) -> Iterator[tuple[list[int], list[str]]]:
    for start in range(0, len(stamps), _BATCH_ROWS):
        yield stamps[start : start + _BATCH_ROWS], texts[start : start + _BATCH_ROWS]


def _merge(runs: list[Iterator[_Row]]) -> Iterator[_Row]:
    # heapq.merge is stable (on equal keys the earlier iterable's item comes first) and the runs
    # are in input order, so equal timestamps keep their input order across runs.
    return heapq.merge(*runs, key=operator.itemgetter(0)) if len(runs) > 1 else runs[0]


def _merged_batches(
    runs: list[Iterator[_Row]],
) -> Iterator[tuple[tuple[int, ...], tuple[str, ...]]]:
    merged = _merge(runs)
    while batch := list(itertools.islice(merged, _BATCH_ROWS)):
        stamps, texts = zip(*batch, strict=True)
        yield stamps, texts


def _select(sorted_stamps: list[Sequence[int]], k: int, lowest: int, highest: int) -> int:
    """The k-th smallest (from 0) timestamp of all runs, by bisecting the timestamp range."""
    while lowest < highest:
        middle = (lowest + highest) // 2
        if sum(bisect.bisect_right(stamps, middle) for stamps in sorted_stamps) > k:
            highest = middle
        else:
            lowest = middle + 1
    return lowest


class _FileReader:
    """Reads one source file into `runs`, checking every record as the original reader did."""

    def __init__(self, path: str, time_column: str, runs: _Runs) -> None:
        self.path = path
        self._time_column = time_column
        self._runs = runs
        self._header: list[str] = []
        self._time_index = 0
        self._record = 0

    def read(self, header: list[str] | None, first_path: str) -> tuple[list[str], str]:
        """Reads the file; returns its header and the SHA-256 of its bytes.

        Raises:
          DataError: Naming the file (and record) of an empty file, a repeated, empty or
            unreadable column name (`source.header_names`; a leading byte-order mark is
            dropped), a missing time column, a header differing from the first file's, a wrong
            field count, a non-integer timestamp or one outside int64, unparseable CSV or
            non-UTF-8 bytes.
        """
        with tf.io.gfile.GFile(self.path, "rb") as f:
            lines = _Lines(f, self.path)
            records = csv.reader(lines)
            first_record = self._next_record(records)
            self._record = 1
            if first_record is None:
                raise DataError(f"{self.path} is empty: expected a header line")
            file_header = header_names(self.path, first_record)
            check_header(
                self.path,
                file_header,
                self._time_column,
                None if header is None else (first_path, header),
            )
            self._header = file_header
            self._time_index = file_header.index(self._time_column)
            while (text := lines.next_text()) is not None:
                if not self._read_plain(text):
                    # Quotes (fields with commas or line ends), NUL or huge fields: the csv
                    # module reads the rest of the file.
                    lines.unread(text)
                    self._read_csv(records)
                    break
            return file_header, lines.sha256.hexdigest()

    def _next_record(self, records: Iterator[list[str]]) -> list[str] | None:
        try:
            return next(records, None)
        except csv.Error as e:
            raise DataError(f"{self.path}:{self._record + 1}: {e}") from e

    def _read_plain(self, text: str) -> bool:
        """Reads whole lines without quotes at C speed; False if the csv module must read them.

        Without `"` and NUL, the csv module's record is the line split at commas, and its
        writer writes the same fields back as the line itself (nothing to quote), so the line's
        text is kept as is.
        """
        if '"' in text or "\0" in text:
            return False
        lines = text.split("\n")
        if not lines[-1]:
            lines.pop()  # The text ended with "\n".
        if max(map(len, lines)) > csv.field_size_limit():
            return False
        commas = len(self._header) - 1
        index = self._time_index
        try:
            if set(map(_count_commas, lines)) != {commas} or (commas == 0 and "" in lines):
                raise ValueError("a record with another field count")
            split = map(str.split, lines, itertools.repeat(","), itertools.repeat(index + 1))
            fields = map(operator.itemgetter(index), split)
            stamps = list(map(int, fields))
            if min(stamps) < -_INT64 or max(stamps) >= _INT64:
                raise ValueError("a timestamp outside int64")
        except ValueError:
            # Some record is bad: check them one by one for the first error, as read.
            stamps = [
                self._timestamp(line.split(",") if line else [], self._record + i + 1)
                for i, line in enumerate(lines)
            ]
        self._record += len(lines)
        self._runs.add(stamps, lines)
        return True

    def _read_csv(self, records: Iterator[list[str]]) -> None:
        stamps: list[int] = []
        texts: list[str] = []
        while (row := self._next_record(records)) is not None:
            self._record += 1
            stamps.append(self._timestamp(row, self._record))
            texts.append(_CSV_LINE.writerow(row)[:-1])
            if len(stamps) >= _BATCH_ROWS:
                self._runs.add(stamps, texts)
                stamps, texts = [], []
        self._runs.add(stamps, texts)

    def _timestamp(self, row: list[str], record: int) -> int:
        return record_timestamp(self.path, record, row, self._header, self._time_column)


class _SplitWriter:
    """Writes one split's CSV in batches, hashing its bytes and noting its rows' time range."""

    def __init__(self, dest_dir: str, split: str, header: str) -> None:
        directory = os.path.join(dest_dir, split)
        tf.io.gfile.makedirs(directory)
        self._f = tf.io.gfile.GFile(os.path.join(directory, DATA_FILE), "wb")
        self.sha256 = hashlib.sha256()
        self.rows = 0
        self.first = self.last = 0
        self._write(header)

    def _write(self, text: str) -> None:
        data = text.encode()
        self.sha256.update(data)
        self._f.write(data)

    def write_rows(self, rows: Iterator[_Row]) -> None:
        """Writes the rows (in order) and closes the file."""
        with self._f:
            while batch := list(itertools.islice(rows, _BATCH_ROWS)):
                if not self.rows:
                    self.first = batch[0][0]
                self.rows += len(batch)
                self.last = batch[-1][0]
                self._write("\n".join([row[1] for row in batch]) + "\n")


def _thin(rows: Iterator[_Row], total: int, keep: int) -> Iterator[_Row]:
    """Rows `int(i * step)` for i in range(keep), step = total / keep, of the sorted rows."""
    step = total / keep
    position = 0
    for i in range(keep):
        target = int(i * step)
        yield next(itertools.islice(rows, target - position, None))
        position = target + 1


def _train_rows(
    sorted_stamps: list[Sequence[int]], runs: _Runs, kept: int, eval_fraction: float
) -> int | None:
    """How many of the `kept` rows (thinned as `_thin` does) go to train; None if none can.

    The cut is at `round(kept * (1 - eval_fraction))`, moved past every row sharing the time of
    the row before it, so eval is strictly later; it fails if that leaves eval empty. Train is
    then every kept row at or before that time: found from the sorted runs' timestamps without
    reading the rows, so nothing is written for a split that fails.
    """
    cut = round(kept * (1.0 - eval_fraction))
    if not 0 < cut < kept:
        return None
    step = runs.rows / kept
    last_train_time = _select(sorted_stamps, int((cut - 1) * step), runs.lowest, runs.highest)
    at_or_before = sum(bisect.bisect_right(stamps, last_train_time) for stamps in sorted_stamps)
    # Kept row i is sorted row int(i * step): count the kept rows among the first at_or_before.
    train = bisect.bisect_left(range(kept), at_or_before, key=lambda i: int(i * step))
    return train if train < kept else None


def prepare_time_split(
    source_uri: str,
    dest_dir: str,
    *,
    eval_fraction: float,
    max_rows: int | None = None,
    time_column: str = DEFAULT_TIME_COLUMN,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
) -> PreparedSplit:
    """Writes `<dest_dir>/train/data.csv` and `<dest_dir>/eval/data.csv` from the source CSVs.

    Rows are ordered by time (equal times in input order), optionally thinned to `max_rows`
    evenly spaced rows, and the newest `eval_fraction` of them go to eval, except that rows
    sharing the cutoff time all stay in train, so eval is strictly later. Everything is read
    and checked, and the cut is known, before anything is written, so bad input leaves
    `dest_dir` untouched.

    Args:
      source_uri: A CSV file or a directory of CSV files sharing one header.
      dest_dir: Output directory (the DataPrep artifact's URI).
      eval_fraction: Approximate share of the newest rows used for evaluation.
      max_rows: Keep an evenly spaced subset of this many rows (spanning the whole period).
      time_column: Integer Unix-time column ordering the rows.
      chunk_rows: Rows sorted in memory at once; more are sorted in runs spilled to local
        temporary files (`TMPDIR`) and merged.

    Returns:
      What was written.

    Raises:
      DataError: If a file is missing, empty or malformed, lacks the time column, or the data is
        too small or too concentrated in time to leave both splits non-empty.
      ValueError: If `chunk_rows` is below 1.
    """
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be at least 1, got {chunk_rows}")
    files = list_source_files(source_uri)
    with contextlib.ExitStack() as stack:
        runs = _Runs(chunk_rows, stack)
        header: list[str] | None = None
        hashes = []
        for path in files:
            header, sha256 = _FileReader(path, time_column, runs).read(header, files[0])
            hashes.append((path, sha256))
        assert header is not None  # list_source_files never returns an empty list.
        sorted_rows, sorted_stamps = runs.finish()

        total = runs.rows
        kept = max_rows if max_rows is not None and total > max_rows else total
        train_rows = _train_rows(sorted_stamps, runs, kept, eval_fraction)
        if train_rows is None:
            raise DataError(
                f"Cannot split {kept} rows of {source_uri} by {time_column} into non-empty train "
                f"and eval parts with eval_fraction={eval_fraction}"
            )

        rows = _merge(sorted_rows)
        if kept < total:
            rows = _thin(rows, total, kept)
        header_line = _CSV_LINE.writerow(header)
        train = _SplitWriter(dest_dir, TRAIN_SPLIT, header_line)
        train.write_rows(itertools.islice(rows, train_rows))
        evaluation = _SplitWriter(dest_dir, EVAL_SPLIT, header_line)
        evaluation.write_rows(rows)

    version = hashlib.sha256(train.sha256.digest() + evaluation.sha256.digest())
    return PreparedSplit(
        data_version=version.hexdigest()[:12],
        source_fingerprint=fingerprint_of(source_uri, hashes),
        source_files=tuple(hashes),
        train_rows=train.rows,
        eval_rows=evaluation.rows,
        train_time_range=(train.first, train.last),
        eval_time_range=(evaluation.first, evaluation.last),
        sorted_runs=len(sorted_rows),
    )
