"""The streaming time split writes exactly what the plain in-memory split writes, in any chunking,
cleans its spill files, and reads quoted fields, CRLF files and bad bytes correctly."""

import csv
import hashlib
import io
import os
import random
import re
import sys

import pytest
import tensorflow as tf

from components.data_prep import source as source_lib
from components.data_prep import time_split

TIME = "trip_start_timestamp"


def _reference(source: str, eval_fraction: float, max_rows: int | None, time_column: str = TIME):
    """The split as first written: every row in a list, sorted, thinned and cut in memory.

    Returns ({split: bytes}, data_version, (train rows, eval rows), (train, eval time range)).
    """
    files = source_lib.list_source_files(source)
    header = None
    rows = []
    for path in files:
        with tf.io.gfile.GFile(path) as f:
            reader = csv.reader(f)
            file_header = next(reader, None)
            if file_header is None:
                raise source_lib.DataError(f"{path} is empty: expected a header line")
            if header is None:
                header = file_header
                if time_column not in header:
                    raise source_lib.DataError(
                        f"{path} has no {time_column!r} column; columns: {header}"
                    )
            elif file_header != header:
                raise source_lib.DataError(
                    f"{path} header {file_header} differs from {files[0]} header {header}"
                )
            index = header.index(time_column)
            for line_number, row in enumerate(reader, start=2):
                if len(row) != len(header):
                    raise source_lib.DataError(
                        f"{path}:{line_number}: {len(row)} fields, "
                        f"expected {len(header)} ({header})"
                    )
                try:
                    stamp = int(row[index])
                except ValueError:
                    raise source_lib.DataError(
                        f"{path}:{line_number}: {time_column} must be an integer Unix time, "
                        f"got {row[index]!r}"
                    ) from None
                rows.append((stamp, len(rows), row))
    rows.sort(key=lambda r: (r[0], r[1]))
    if max_rows is not None and len(rows) > max_rows:
        step = len(rows) / max_rows
        rows = [rows[int(i * step)] for i in range(max_rows)]
    cut = round(len(rows) * (1.0 - eval_fraction))
    while 0 < cut < len(rows) and rows[cut][0] == rows[cut - 1][0]:
        cut += 1
    if cut <= 0 or cut >= len(rows):
        raise source_lib.DataError(f"Cannot split {len(rows)} rows of {source}")
    written = {}
    for split, part in (("train", rows[:cut]), ("eval", rows[cut:])):
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(r[2] for r in part)
        written[split] = buffer.getvalue().encode()
    version = hashlib.sha256()
    for content in written.values():
        version.update(hashlib.sha256(content).digest())
    parts = (rows[:cut], rows[cut:])
    ranges = tuple((part[0][0], part[-1][0]) for part in parts)
    return written, version.hexdigest()[:12], tuple(len(part) for part in parts), ranges


def _assert_same_as_reference(source, out, eval_fraction, max_rows, chunk_rows, time_column=TIME):
    prepared = time_split.prepare_time_split(
        str(source),
        str(out),
        eval_fraction=eval_fraction,
        max_rows=max_rows,
        time_column=time_column,
        chunk_rows=chunk_rows,
    )
    written, version, counts, ranges = _reference(str(source), eval_fraction, max_rows, time_column)
    for split, content in written.items():
        assert (out / split / "data.csv").read_bytes() == content, split
    assert prepared.data_version == version
    assert (prepared.train_rows, prepared.eval_rows) == counts
    assert (prepared.train_time_range, prepared.eval_time_range) == ranges
    assert prepared.source_files == tuple(
        (path, source_lib.file_sha256(path)) for path in source_lib.list_source_files(str(source))
    )
    assert prepared.source_fingerprint == source_lib.fingerprint_source(str(source))
    return prepared


def _write_rows(path, header, rows, newline="\n") -> None:
    with open(path, "w", newline="") as f:
        csv.writer(f, lineterminator=newline).writerows([header, *rows])


def _random_source(directory, seed: int, files: int, rows_per_file: int, time_index: int):
    """CSV files of random rows, timestamps from a narrow range (many ties across files)."""
    rng = random.Random(seed)
    header = ["a", "b", "c"]
    header.insert(time_index, TIME)
    directory.mkdir()
    for n in range(files):
        rows = []
        for i in range(rows_per_file):
            row = [f"{n}-{i}", f"{rng.random():.3f}", rng.choice(["Cash", "Credit Card", ""])]
            row.insert(time_index, str(rng.randrange(1000, 1040)))
            rows.append(row)
        _write_rows(directory / f"part-{n}.csv", header, rows)
    return directory


@pytest.mark.parametrize("chunk_rows", [1, 7, 50, 10_000])
@pytest.mark.parametrize(("eval_fraction", "max_rows"), [(0.2, None), (0.25, 37), (0.5, 120)])
def test_any_chunking_writes_the_bytes_of_the_in_memory_split(
    tmp_path, chunk_rows, eval_fraction, max_rows
) -> None:
    source = _random_source(
        tmp_path / "src", seed=chunk_rows, files=3, rows_per_file=60, time_index=chunk_rows % 4
    )
    prepared = _assert_same_as_reference(
        source,
        tmp_path / "out",
        eval_fraction,
        max_rows,
        chunk_rows,
    )
    # 180 rows: full chunks spilled, the last kept in memory; over 64 runs merged in groups.
    assert prepared.sorted_runs == {1: 3, 7: 26, 50: 4, 10_000: 1}[chunk_rows]


def test_many_runs_are_merged_in_groups_with_ties_in_input_order(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(time_split, "_MERGE_FAN_IN", 3)
    source = tmp_path / "src"
    source.mkdir()
    # Ten timestamps, each on rows spread over every file and chunk: order among equal times
    # is input order, which the "n" column shows.
    for part in range(2):
        _write_rows(
            source / f"part-{part}.csv",
            [TIME, "n"],
            [[str(1000 + (i * 7) % 10), f"{part}-{i:03d}"] for i in range(100)],
        )
    prepared = _assert_same_as_reference(source, tmp_path / "out", 0.3, None, chunk_rows=4)
    assert prepared.sorted_runs == 2  # 50 runs of 4 rows, merged in 3 levels of groups of 3


def test_quoted_fields_crlf_and_a_last_line_without_newline_read_as_before(tmp_path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    rows = [
        [str(1000 + i % 5), f"name, with comma {i}", 'say "hi"\nnext line', "Cash"]
        for i in range(40)
    ]
    _write_rows(source / "a.csv", [TIME, "company", "notes", "payment_type"], rows[:20], "\r\n")
    _write_rows(source / "b.csv", [TIME, "company", "notes", "payment_type"], rows[20:])
    # A plain file, CRLF, with no newline after its last row.
    (source / "c.csv").write_bytes(
        (
            f"{TIME},company,notes,payment_type\r\n"
            + "".join(f"{1000 + i},plain {i},x,Cash\r\n" for i in range(30))
            + "1004,last,x,Cash"
        ).encode()
    )
    for chunk_rows in (3, 1000):
        out = tmp_path / f"out-{chunk_rows}"
        _assert_same_as_reference(source, out, 0.3, None, chunk_rows)
        with open(out / "train" / "data.csv", newline="") as f:
            train = list(csv.DictReader(f))
        assert {r["notes"] for r in train} >= {'say "hi"\nnext line', "x"}
        assert "name, with comma 0" in {r["company"] for r in train}


def test_quotes_after_many_plain_lines_switch_to_the_csv_reader_mid_file(tmp_path, monkeypatch):
    # Small read blocks: the first quote appears blocks after the start of the file.
    monkeypatch.setattr(time_split, "_READ_BYTES", 64)
    source = tmp_path / "a.csv"
    rows = [[str(2000 - i), f"row {i}"] for i in range(50)]
    rows += [[str(1000 + i), f'"quoted", {i}\nline'] for i in range(10)]
    rows += [[str(1500 + i), f"plain again ü {i}"] for i in range(10)]
    _write_rows(source, [TIME, "text"], rows)
    _assert_same_as_reference(source, tmp_path / "out", 0.2, 33, chunk_rows=8)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "a.csv is empty: expected a header line"),
        ("fare,tips\n1,2\n", "a.csv has no 'trip_start_timestamp' column"),
        (
            f"{TIME},x\n" + "".join(f"{i},v\n" for i in range(40)) + "5,v,extra\n",
            "a.csv:42: 3 fields, expected 2",
        ),
        (f"{TIME},x\n" + "".join(f"{i},v\n" for i in range(40)) + "\n", "a.csv:42: 0 fields"),
        (
            f"{TIME},x\n" + "".join(f"{i},v\n" for i in range(40)) + "1.5,v\n1,v,w\n",
            "a.csv:42: trip_start_timestamp must be an integer Unix time, got '1.5'",
        ),
        (
            f"{TIME},x\n" + "".join(f"{i},v\n" for i in range(40)) + '"7,v\n',
            "a.csv:42: 1 fields, expected 2",
        ),
        (f"{TIME},x\n1,v\n", "Cannot split 1 rows"),
        (f"{TIME},x\n" + "".join(f"{min(i, 5)},v\n" for i in range(40)), "Cannot split 40 rows"),
    ],
)
def test_bad_input_fails_as_before_after_spilling_and_leaves_nothing(
    tmp_path, monkeypatch, content, message
) -> None:
    spill = tmp_path / "spill"
    spill.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(spill))
    source = tmp_path / "src"
    source.mkdir()
    (source / "a.csv").write_text(content)
    with pytest.raises(source_lib.DataError, match=re.escape(message)):
        _reference(str(source), 0.25, None)
    with pytest.raises(source_lib.DataError, match=re.escape(message)):
        time_split.prepare_time_split(
            str(source), str(tmp_path / "out"), eval_fraction=0.25, chunk_rows=4
        )
    assert not (tmp_path / "out").exists()
    assert not list(spill.iterdir())


def test_a_header_differing_between_files_is_named(tmp_path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    _write_rows(source / "a.csv", [TIME, "x"], [[str(i), "v"] for i in range(10)])
    _write_rows(source / "b.csv", [TIME, "y"], [[str(i), "v"] for i in range(10)])
    message = f"{source}/b.csv header ['{TIME}', 'y'] differs from {source}/a.csv header"
    with pytest.raises(source_lib.DataError, match=re.escape(message)):
        time_split.prepare_time_split(str(source), str(tmp_path / "out"), eval_fraction=0.2)
    assert not (tmp_path / "out").exists()


def test_spill_files_go_to_tmpdir_and_are_removed(tmp_path, monkeypatch) -> None:
    spill = tmp_path / "spill"
    spill.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(spill))
    source = _random_source(tmp_path / "src", seed=1, files=1, rows_per_file=100, time_index=0)
    seen = []
    real_write_run = time_split._Runs._write_run

    def _write_run_and_look(self, batches):
        path = real_write_run(self, batches)
        seen.append(os.path.dirname(path))
        return path

    monkeypatch.setattr(time_split._Runs, "_write_run", _write_run_and_look)
    prepared = time_split.prepare_time_split(
        str(source), str(tmp_path / "out"), eval_fraction=0.2, chunk_rows=30
    )
    assert prepared.sorted_runs == 4
    assert seen and {os.path.dirname(d) for d in seen} == {str(spill)}
    assert not list(spill.iterdir())


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"trip_start_timestamp,x\n1,\xff\n", "a.csv is not UTF-8 text"),
        # Python 3.10's csv module (tfx-1.16) rejects NUL; 3.11+ (tfx-1.21) reads it as data, so
        # there the one row is counted and the split is what fails.
        (
            b"trip_start_timestamp,x\n1,a\x00b\n",
            "a.csv:2: line contains NUL"
            if sys.version_info < (3, 11)
            else "Cannot split 1 rows of ",
        ),
        (
            b"trip_start_timestamp,x\n1,v\n99999999999999999999,v\n",
            "a.csv:3: trip_start_timestamp '99999999999999999999' is outside the 64-bit",
        ),
    ],
)
def test_bytes_the_split_cannot_carry_are_named(tmp_path, content, message) -> None:
    source = tmp_path / "a.csv"
    source.write_bytes(content)
    with pytest.raises(source_lib.DataError, match=re.escape(message)):
        time_split.prepare_time_split(str(source), str(tmp_path / "out"), eval_fraction=0.5)
    assert not (tmp_path / "out").exists()


def test_chunk_rows_below_one_is_refused(tmp_path) -> None:
    with pytest.raises(ValueError, match="chunk_rows must be at least 1, got 0"):
        time_split.prepare_time_split(
            str(tmp_path), str(tmp_path / "out"), eval_fraction=0.2, chunk_rows=0
        )


def test_random_inputs_split_or_fail_exactly_as_the_in_memory_split(tmp_path) -> None:
    # Few distinct timestamps, skewed to the newest: the cut often lands in a tie, and thinning
    # sometimes leaves no row later than the cut, which must fail as it did.
    rng = random.Random(7)
    outcomes = set()
    for case in range(150):
        source = tmp_path / f"src-{case}.csv"
        stamps = [rng.choice([1, 2, 3, 9, 9, 9, 9]) for _ in range(rng.randrange(1, 40))]
        _write_rows(source, [TIME, "n"], [[str(t), str(i)] for i, t in enumerate(stamps)])
        eval_fraction = rng.choice([0.05, 0.2, 0.5, 0.8])
        max_rows = rng.choice([None, 2, 5, 13])
        try:
            _reference(str(source), eval_fraction, max_rows)
        except source_lib.DataError:
            with pytest.raises(source_lib.DataError, match="Cannot split"):
                time_split.prepare_time_split(
                    str(source),
                    str(tmp_path / f"out-{case}"),
                    eval_fraction=eval_fraction,
                    max_rows=max_rows,
                    chunk_rows=rng.randrange(1, 8),
                )
            assert not (tmp_path / f"out-{case}").exists()
            outcomes.add("cannot split")
            continue
        _assert_same_as_reference(
            source, tmp_path / f"out-{case}", eval_fraction, max_rows, rng.randrange(1, 8)
        )
        outcomes.add("split")
    assert outcomes == {"split", "cannot split"}
