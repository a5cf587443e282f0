"""DataPrep: time split without leakage, fingerprints that follow the bytes, clear errors,
the executor's recorded metadata, and ExampleGen reading its output."""

import csv
import json
import os

import pytest
import tensorflow as tf

from components.data_prep import executor as data_prep_executor
from components.data_prep import source as source_lib
from components.data_prep import time_split
from components.data_prep.artifacts import PreparedData
from components.data_prep.component import DataPrep

HEADER = ["trip_start_timestamp", "fare", "tips", "payment_type"]


def _write(path, rows, header=HEADER) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


def _stamps(path) -> list[int]:
    with open(path) as f:
        return [int(r["trip_start_timestamp"]) for r in csv.DictReader(f)]


def test_eval_rows_are_strictly_later_than_train_rows_even_with_ties(tmp_path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    # Shuffled timestamps with a tie exactly at the 80% cut (t=800 appears three times).
    stamps = [500, 100, 800, 900, 300, 800, 200, 1000, 800, 400]
    _write(source / "a.csv", [[t, "10.0", "1.0", "Cash"] for t in stamps])
    out = tmp_path / "out"
    prepared = time_split.prepare_time_split(str(source), str(out), eval_fraction=0.2)
    train = _stamps(out / "train" / "data.csv")
    evaluation = _stamps(out / "eval" / "data.csv")
    assert max(train) < min(evaluation)
    assert sorted(train + evaluation) == sorted(stamps)  # nothing lost
    assert train.count(800) == 3
    assert (prepared.train_rows, prepared.eval_rows) == (len(train), len(evaluation))
    assert prepared.train_time_range == (100, 800)
    assert prepared.eval_time_range == (900, 1000)
    assert prepared.source_fingerprint == source_lib.fingerprint_source(str(source))


def test_fingerprint_follows_names_and_bytes_not_location(tmp_path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    for folder in (a, b):
        folder.mkdir()
        _write(folder / "part-1.csv", [[t, "1", "0", "Cash"] for t in range(10)])
    (a / "notes.txt").write_text("not data")
    first = source_lib.fingerprint_source(str(a))
    assert first == source_lib.fingerprint_source(str(b))  # same files elsewhere
    assert len(first) == 64
    _write(b / "part-1.csv", [[t, "2", "0", "Cash"] for t in range(10)])
    assert source_lib.fingerprint_source(str(b)) != first  # edited bytes
    os.rename(a / "part-1.csv", a / "part-2.csv")
    assert source_lib.fingerprint_source(str(a)) != first  # renamed file
    assert source_lib.list_source_files(str(a)) == [str(a / "part-2.csv")]


def test_same_source_gives_the_same_data_version(tmp_path) -> None:
    source = tmp_path / "data.csv"
    _write(source, [[t, "1", "0", "Cash"] for t in range(100)])
    first = time_split.prepare_time_split(str(source), str(tmp_path / "1"), eval_fraction=0.2)
    second = time_split.prepare_time_split(str(source), str(tmp_path / "2"), eval_fraction=0.2)
    assert second.data_version == first.data_version
    other = time_split.prepare_time_split(str(source), str(tmp_path / "3"), eval_fraction=0.3)
    assert other.data_version != first.data_version


def test_max_rows_keeps_an_evenly_spaced_slice_of_the_whole_period(tmp_path) -> None:
    source = tmp_path / "data.csv"
    _write(source, [[t, "1", "0", "Cash"] for t in range(1000)])
    prepared = time_split.prepare_time_split(
        str(source), str(tmp_path / "out"), eval_fraction=0.2, max_rows=100
    )
    assert prepared.train_rows + prepared.eval_rows == 100
    assert _stamps(tmp_path / "out" / "eval" / "data.csv")[-1] >= 980


def test_default_source_is_the_sample_inside_the_tfx_wheel() -> None:
    path = source_lib.default_source()
    assert os.path.join("tfx", "examples", "chicago_taxi_pipeline") in path
    assert source_lib.list_source_files(path) == [os.path.join(path, "data.csv")]


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
    with pytest.raises(source_lib.DataError, match=message.replace("(", r"\(").replace(")", r"\)")):
        time_split.prepare_time_split(str(source), str(tmp_path / "out"), eval_fraction=0.2)
    assert not (tmp_path / "out").exists()


def test_missing_or_empty_source_is_named(tmp_path) -> None:
    with pytest.raises(source_lib.DataError, match=f"Source {tmp_path}/none does not exist"):
        source_lib.fingerprint_source(str(tmp_path / "none"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(source_lib.DataError, match=r"No \.csv files in"):
        source_lib.list_source_files(str(tmp_path / "empty"))


def _run_executor(source: str, fingerprint: str, out: str) -> PreparedData:
    artifact = PreparedData()
    artifact.uri = out
    data_prep_executor.Executor().Do(
        {},
        {data_prep_executor.PREPARED_DATA_KEY: [artifact]},
        {
            "source_uri": source,
            "source_fingerprint": fingerprint,
            "eval_fraction": 0.25,
            "max_rows": None,
            "time_column": "trip_start_timestamp",
        },
    )
    return artifact


def test_executor_records_the_run_data_metadata(tmp_path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    _write(source / "a.csv", [[t, "1", "0", "Cash"] for t in range(0, 40, 5)])
    fingerprint = source_lib.fingerprint_source(str(source))
    artifact = _run_executor(str(source), fingerprint, str(tmp_path / "out"))
    props = artifact.mlmd_artifact.custom_properties
    assert (props["train_rows"].int_value, props["eval_rows"].int_value) == (6, 2)
    ranges = [props[name].int_value for name in data_prep_executor.TIME_RANGE_PROPERTIES]
    assert ranges == [0, 25, 30, 35]
    assert props["source_fingerprint"].string_value == fingerprint
    files = json.loads(props["source_files"].string_value)
    assert files == [
        {"path": str(source / "a.csv"), "sha256": source_lib.file_sha256(str(source / "a.csv"))}
    ]
    assert len(props["data_version"].string_value) == 12
    assert _stamps(tmp_path / "out" / "eval" / "data.csv") == [30, 35]


def test_executor_refuses_data_that_changed_after_the_fingerprint(tmp_path) -> None:
    source = tmp_path / "a.csv"
    _write(source, [[t, "1", "0", "Cash"] for t in range(10)])
    stale = source_lib.fingerprint_source(str(source))
    _write(source, [[t, "9", "0", "Cash"] for t in range(10)])
    with pytest.raises(source_lib.DataError, match="changed after the run fingerprinted it"):
        _run_executor(str(source), stale, str(tmp_path / "out"))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"source_uri": ""}, "DataPrep needs source_uri"),
        ({"source_fingerprint": ""}, "DataPrep needs source_fingerprint"),
        ({"eval_fraction": 1.0}, r"eval_fraction in \(0, 1\)"),
        ({"max_rows": 1}, "max_rows >= 2"),
    ],
)
def test_bad_parameters_fail_when_the_pipeline_is_built(kwargs, message) -> None:
    values = {"source_uri": "/data", "source_fingerprint": "abc", "eval_fraction": 0.2}
    with pytest.raises(ValueError, match=message):
        DataPrep(**{**values, **kwargs})


def test_example_gen_turns_the_prepared_splits_into_examples(tmp_path) -> None:
    from tfx.types import standard_artifacts

    source = tmp_path / "a.csv"
    _write(source, [[t, "1.5", "0", "Cash"] for t in range(20)])
    prepared = _run_executor(
        str(source), source_lib.fingerprint_source(str(source)), str(tmp_path / "prepared")
    )
    examples = standard_artifacts.Examples()
    examples.uri = str(tmp_path / "examples")
    data_prep_executor.ExampleGenExecutor().Do(
        {data_prep_executor.PREPARED_DATA_KEY: [prepared]},
        {data_prep_executor.EXAMPLES_KEY: [examples]},
        {},
    )
    assert json.loads(examples.split_names) == ["train", "eval"]
    counts = {}
    for split in ("train", "eval"):
        files = tf.io.gfile.glob(os.path.join(examples.uri, f"Split-{split}", "*.gz"))
        records = list(tf.data.TFRecordDataset(files, compression_type="GZIP").as_numpy_iterator())
        counts[split] = len(records)
    assert counts == {"train": 15, "eval": 5}
    first_eval = tf.train.Example.FromString(records[0])
    assert first_eval.features.feature["trip_start_timestamp"].int64_list.value == [15]
