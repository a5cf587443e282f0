"""DataPrep: time split without leakage, fingerprints that follow the bytes, clear errors,
the executor's recorded metadata, and ExampleGen reading its output."""

import csv
import json
import os
import re
import subprocess
import sys

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


BAD_SOURCES = [
    # (file content, the DataError both DataPrep and the pre-flight check raise)
    (
        b"trip_start_timestamp,fare,tips,payment_type,fare\n1,10.0,1.0,Cash,999.0\n",
        "a.csv: column 'fare' appears 2 times in the header (columns 2, 5)",
    ),
    (b"trip_start_timestamp,,tips\n1,2,3\n", "a.csv: header column 2 has no name"),
    (b'trip_start_timestamp,"fa,re"\n1,2\n', "a.csv: header column 2 name 'fa,re' holds a comma"),
    (b"fare,tips\n1,2\n", "a.csv has no 'trip_start_timestamp' column"),
    (b"trip_start_timestamp,fare\n1,2\nx,3\n", "a.csv:3: trip_start_timestamp must be an integer"),
    (b"trip_start_timestamp,fare\n1,2\n\n2,3\n", "a.csv:3: 0 fields, expected 2"),
    (b"trip_start_timestamp,fare\n1,2,3\n", "a.csv:2: 3 fields, expected 2"),
    (b"trip_start_timestamp,fare\n1,\xff\n", "a.csv is not UTF-8 text"),
    (b"", "a.csv is empty: expected a header line"),
]


@pytest.mark.parametrize(("content", "message"), BAD_SOURCES)
def test_bad_headers_and_records_are_data_errors_naming_file_and_column(
    tmp_path, content: bytes, message: str
) -> None:
    source = tmp_path / "src"
    source.mkdir()
    (source / "a.csv").write_bytes(content)
    with pytest.raises(source_lib.DataError, match=re.escape(message)):
        time_split.prepare_time_split(str(source), str(tmp_path / "out"), eval_fraction=0.5)
    assert not (tmp_path / "out").exists()
    # The pre-flight check answers the same, from the header and first rows alone.
    with pytest.raises(source_lib.DataError, match=re.escape(message)):
        source_lib.preflight(str(source))


def test_a_byte_order_mark_is_not_part_of_the_first_column_name(tmp_path) -> None:
    from tfx.types import standard_artifacts

    source = tmp_path / "a.csv"
    header = ["pickup_community_area", "trip_start_timestamp", "fare"]
    rows = "".join(f"{8 + t % 2},{t},{t}.5\n" for t in range(10))
    source.write_bytes(b"\xef\xbb\xbf" + (",".join(header) + "\n" + rows).encode())
    assert source_lib.preflight(str(source)) == [str(source)]
    prepared = _run_executor(
        str(source), source_lib.fingerprint_source(str(source)), str(tmp_path / "prepared")
    )
    with open(tmp_path / "prepared" / "train" / "data.csv", "rb") as f:
        assert f.readline() == b"pickup_community_area,trip_start_timestamp,fare\n"
    examples = standard_artifacts.Examples()
    examples.uri = str(tmp_path / "examples")
    data_prep_executor.ExampleGenExecutor().Do(
        {data_prep_executor.PREPARED_DATA_KEY: [prepared]},
        {data_prep_executor.EXAMPLES_KEY: [examples]},
        {},
    )
    files = tf.io.gfile.glob(os.path.join(examples.uri, "Split-train", "*.gz"))
    record = next(tf.data.TFRecordDataset(files, compression_type="GZIP").as_numpy_iterator())
    assert sorted(tf.train.Example.FromString(record).features.feature) == sorted(header)


def test_preflight_checks_every_file_and_imports_neither_tensorflow_nor_tfx(tmp_path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    _write(source / "a.csv", [[t, "1", "0", "Cash"] for t in range(5)])
    _write(source / "b.csv", [[t, "1", "0"] for t in range(5)], HEADER[:3])
    (source / "notes.txt").write_text("not data")
    script = (
        "import sys\n"
        "from components.data_prep import source\n"
        "try:\n"
        f"    source.preflight({str(source)!r})\n"
        "except source.DataError as e:\n"
        "    print(e)\n"
        "print('default:', len(source.preflight(source.default_source())))\n"
        "loaded = {m.split('.')[0] for m in sys.modules}\n"
        "heavy = sorted(loaded & {'tensorflow', 'tfx', 'apache_beam'})\n"
        "print('heavy modules:', heavy)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": os.getcwd()},
    )
    assert f"{source / 'b.csv'} header {HEADER[:3]} differs from {source / 'a.csv'}" in done.stdout
    assert "default: 1" in done.stdout and "heavy modules: []" in done.stdout
    # Only the first rows are read: DataPrep itself finds what lies further on.
    _write(source / "b.csv", [[t, "1", "0", "Cash"] for t in range(5)] + [["late", "1", "0", "x"]])
    assert source_lib.preflight(str(source), rows=5) == [
        str(source / "a.csv"),
        str(source / "b.csv"),
    ]
    with pytest.raises(source_lib.DataError, match=re.escape("b.csv:7: trip_start_timestamp")):
        source_lib.preflight(str(source))
    assert source_lib.preflight("gs://bucket/data") == []


def test_missing_or_empty_source_is_named(tmp_path) -> None:
    with pytest.raises(source_lib.DataError, match=f"Source {tmp_path}/none does not exist"):
        source_lib.fingerprint_source(str(tmp_path / "none"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(source_lib.DataError, match=r"No \.csv files in"):
        source_lib.list_source_files(str(tmp_path / "empty"))
    with pytest.raises(source_lib.DataError, match=f"Source {tmp_path}/none does not exist"):
        source_lib.preflight(str(tmp_path / "none"))
    with pytest.raises(source_lib.DataError, match=r"No \.csv files in"):
        source_lib.preflight(str(tmp_path / "empty"))


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
