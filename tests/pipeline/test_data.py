"""Time-ordered, versioned data preparation: no leakage, idempotent, clear errors."""

import csv
import os

import pytest

from pipeline import data as data_lib

HEADER = ["trip_start_timestamp", "fare", "tips", "payment_type"]


def _write(path, rows, header=HEADER) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


def _read(path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))


def test_eval_rows_are_strictly_later_than_train_rows_even_with_ties(tmp_path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    # Shuffled timestamps with a tie exactly at the 80% cut (t=800 appears three times).
    stamps = [500, 100, 800, 900, 300, 800, 200, 1000, 800, 400]
    _write(source / "a.csv", [[t, "10.0", "1.0", "Cash"] for t in stamps])
    prepared = data_lib.prepare_time_split(str(source), str(tmp_path / "out"), eval_fraction=0.2)
    train = [
        int(r["trip_start_timestamp"])
        for r in _read(os.path.join(prepared.root, "train", "data.csv"))
    ]
    evaluation = [
        int(r["trip_start_timestamp"])
        for r in _read(os.path.join(prepared.root, "eval", "data.csv"))
    ]
    assert max(train) < min(evaluation)
    assert sorted(train + evaluation) == sorted(stamps)  # nothing lost
    assert train.count(800) == 3 and prepared.cutoff_timestamp == 800
    assert (prepared.train_rows, prepared.eval_rows) == (len(train), len(evaluation))


def test_same_content_reuses_the_version_without_rewriting(tmp_path) -> None:
    source = tmp_path / "data.csv"
    _write(source, [[t, "1", "0", "Cash"] for t in range(100)])
    first = data_lib.prepare_time_split(str(source), str(tmp_path / "out"))
    mtime = os.path.getmtime(os.path.join(first.root, "train", "data.csv"))
    second = data_lib.prepare_time_split(str(source), str(tmp_path / "out"))
    assert second == first
    assert os.path.getmtime(os.path.join(first.root, "train", "data.csv")) == mtime
    _write(source, [[t, "2", "0", "Cash"] for t in range(100)])
    assert data_lib.prepare_time_split(str(source), str(tmp_path / "out")).version != first.version


def test_max_rows_keeps_an_evenly_spaced_slice_of_the_whole_period(tmp_path) -> None:
    source = tmp_path / "data.csv"
    _write(source, [[t, "1", "0", "Cash"] for t in range(1000)])
    prepared = data_lib.prepare_time_split(str(source), str(tmp_path / "out"), max_rows=100)
    assert prepared.train_rows + prepared.eval_rows == 100
    stamps = [
        int(r["trip_start_timestamp"])
        for r in _read(os.path.join(prepared.root, "eval", "data.csv"))
    ]
    assert stamps[-1] >= 980


def test_default_source_is_the_sample_inside_the_tfx_wheel() -> None:
    path = data_lib.default_source()
    assert os.path.join("tfx", "examples", "chicago_taxi_pipeline") in path
    assert os.path.isfile(os.path.join(path, "data.csv"))


@pytest.mark.parametrize(
    ("rows", "header", "message"),
    [
        (
            [["x", "1", "0", "Cash"]],
            HEADER,
            "a.csv:2: trip_start_timestamp must be an integer Unix time, got 'x'",
        ),
        ([["1", "1", "0"]], HEADER, "a.csv:2: 3 fields, expected 4"),
        ([["1", "1"]], ["fare", "tips"], "has no 'trip_start_timestamp' column"),
        ([["1", "1", "0", "Cash"]], HEADER, "Cannot split 1 rows"),
    ],
)
def test_bad_input_fails_clearly_and_writes_nothing(tmp_path, rows, header, message) -> None:
    source = tmp_path / "src"
    source.mkdir()
    _write(source / "a.csv", rows, header)
    with pytest.raises(data_lib.DataError, match=message.replace("(", r"\(").replace(")", r"\)")):
        data_lib.prepare_time_split(str(source), str(tmp_path / "out"))
    assert not (tmp_path / "out").exists() or not os.listdir(tmp_path / "out")
