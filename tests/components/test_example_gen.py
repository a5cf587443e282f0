"""ExampleGen's batched CSV conversion writes exactly the examples TFX's CsvExampleGen writes."""

import collections
import csv
import itertools
import os
import struct

import apache_beam as beam
import pyarrow as pa
import pytest
import tensorflow as tf
from tfx.components.example_gen import base_example_gen_executor
from tfx.components.example_gen.csv_example_gen import executor as csv_executor
from tfx.types import standard_artifacts, standard_component_specs
from tfx_bsl.coders import csv_decoder

from components.data_prep import csv_batches, time_split
from components.data_prep import executor as data_prep_executor
from components.data_prep import source as source_lib
from components.data_prep.artifacts import PreparedData

# Every column is a case CsvExampleGen's type inference or conversion treats specially.
EDGE_HEADER = [
    "ints",  # INT, with cells only Python's int() reads: spaces, a sign, underscores, zeros
    "int64_edges",  # INT at the int64 limits (19 digits: Python decides)
    "too_big",  # an integer past int64 makes the column STRING
    "mixed",  # ints and floats: FLOAT, ints stored as floats
    "floats",  # inf, nan, float32 overflow and underflow, the FLT_MAX rounding edge
    "all_empty",  # no value anywhere: a feature with no kind
    "strings",  # quoting: delimiters, doubled quotes, newlines inside a cell
    "unicode",
    "late_string",  # ints until the last row: STRING
]
EDGE_ROWS = [
    [" 5", "9223372036854775807", "1", "1", "inf", "", "Cash", "é", "1"],
    ["+3", "-9223372036854775808", "9223372036854775808", "2.5", "nan", "", "a,b", "日本", "2"],
    ["1_000", "", "", "", "-Infinity", "", 'say "hi"', "", ""],
    ["007", "0", "x", "1e3", "3.4028235677973366e38", "", "two\nlines", "ü", "3"],
    ["", "1", "2", "-0.0", "-3.4028235677973366e38", "", "", "x", "4"],
    ["-0", "2", "3", "7", "1e39", "", " spaced ", "y", "5"],
    ["12", "3", "4", "0.1", "1e-46", "", "1", "z", "6"],
    ["13", "4", "5", " 1.5 ", "0.30000000000000004441", "", "2.5", "w", "seven"],
]


# The same cases without quotes, CRs or NULs, so that Arrow's C++ reader parses them.
PLAIN_ROWS = [[*row[:6], f"s{i}", *row[7:]] for i, row in enumerate(EDGE_ROWS)]


def _write_csv(path: str, header: list[str], rows: list[list[str]], newline: str = "\n") -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f, lineterminator=newline)
        writer.writerow(header)
        writer.writerows(rows)


def _canonical(serialized: bytes) -> tuple:
    """An example as a hashable value; floats by their bits so that NaN equals NaN."""
    example = tf.train.Example.FromString(serialized)
    features = []
    for name, feature in example.features.feature.items():
        kind = feature.WhichOneof("kind")
        if kind is None:
            values: tuple = ()
        elif kind == "float_list":
            values = tuple(struct.pack("<f", v) for v in feature.float_list.value)
        else:
            values = tuple(getattr(feature, kind).value)
        features.append((name, kind, values))
    return tuple(sorted(features))


def _read_split(examples_uri: str, split: str) -> collections.Counter:
    files = tf.io.gfile.glob(os.path.join(examples_uri, f"Split-{split}", "*.gz"))
    records = tf.data.TFRecordDataset(files, compression_type="GZIP").as_numpy_iterator()
    return collections.Counter(_canonical(r) for r in records)


def _run_tfx_csv_example_gen(
    prepared: str, output: str, executor: csv_executor.Executor | None = None
) -> None:
    examples = standard_artifacts.Examples()
    examples.uri = output
    # TFX's generic ExampleGen `Do`, with the given executor's input transform.
    base_example_gen_executor.BaseExampleGenExecutor.Do(
        executor or csv_executor.Executor(),
        {},
        {standard_component_specs.EXAMPLES_KEY: [examples]},
        data_prep_executor.csv_example_gen_properties(prepared),
    )


def _run_ours(prepared: str, output: str) -> standard_artifacts.Examples:
    data = PreparedData()
    data.uri = prepared
    examples = standard_artifacts.Examples()
    examples.uri = output
    data_prep_executor.ExampleGenExecutor().Do(
        {data_prep_executor.PREPARED_DATA_KEY: [data]},
        {data_prep_executor.EXAMPLES_KEY: [examples]},
        {},
    )
    return examples


def _taxi_head(rows: int) -> tuple[list[str], list[list[str]]]:
    with open(os.path.join(source_lib.default_source(), "data.csv"), newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        return header, list(itertools.islice(reader, rows))


def test_executor_writes_what_csv_example_gen_writes(tmp_path) -> None:
    prepared = str(tmp_path / "prepared")
    train = os.path.join(prepared, time_split.TRAIN_SPLIT)
    # Two files in one split (one with CRLF line ends), and a blank line between records.
    _write_csv(os.path.join(train, "a.csv"), EDGE_HEADER, EDGE_ROWS[:5])
    _write_csv(os.path.join(train, "b.csv"), EDGE_HEADER, EDGE_ROWS[5:], newline="\r\n")
    _write_csv(os.path.join(train, "c.csv"), EDGE_HEADER, PLAIN_ROWS)
    with open(os.path.join(train, "a.csv"), "a") as f:
        f.write("\n")
    header, taxi = _taxi_head(2000)
    _write_csv(os.path.join(prepared, time_split.EVAL_SPLIT, "data.csv"), header, taxi)

    _run_tfx_csv_example_gen(prepared, str(tmp_path / "tfx"))
    ours = _run_ours(prepared, str(tmp_path / "ours"))

    for split, rows in (("train", 2 * len(EDGE_ROWS)), ("eval", len(taxi))):
        expected = _read_split(str(tmp_path / "tfx"), split)
        got = _read_split(ours.uri, split)
        assert sum(expected.values()) == rows
        assert got == expected, split
    # Files in name order hold the rows in input order (TFX on the DirectRunner keeps it too).
    files = sorted(tf.io.gfile.glob(os.path.join(ours.uri, "Split-eval", "*.gz")))
    stamps = [
        tf.train.Example.FromString(record)
        .features.feature["trip_start_timestamp"]
        .int64_list.value[0]
        for record in tf.data.TFRecordDataset(files, compression_type="GZIP").as_numpy_iterator()
    ]
    assert stamps == [int(row[header.index("trip_start_timestamp")]) for row in taxi]
    kinds = {name: kind for name, kind, _ in next(iter(_read_split(ours.uri, "train")))}
    assert kinds == {
        "ints": "int64_list",
        "int64_edges": "int64_list",
        "too_big": "bytes_list",
        "mixed": "float_list",
        "floats": "float_list",
        "all_empty": None,
        "strings": "bytes_list",
        "unicode": "bytes_list",
        "late_string": "bytes_list",
    }


def test_a_split_without_rows_gives_a_readable_empty_split(tmp_path) -> None:
    prepared = str(tmp_path / "prepared")
    _write_csv(os.path.join(prepared, time_split.TRAIN_SPLIT, "data.csv"), ["a"], [["1"]])
    _write_csv(os.path.join(prepared, time_split.EVAL_SPLIT, "data.csv"), ["a"], [])
    ours = _run_ours(prepared, str(tmp_path / "ours"))
    assert _read_split(ours.uri, "eval") == collections.Counter()
    assert len(tf.io.gfile.glob(os.path.join(ours.uri, "Split-eval", "*.gz"))) == 1
    assert sum(_read_split(ours.uri, "train").values()) == 1


def test_input_transform_gives_tfx_examples_through_tfx_write_split(tmp_path) -> None:
    # `GetInputSourceToExamplePTransform` (used by TFX's generic `GenerateExamplesByBeam`) is the
    # batched path too.
    header = EDGE_HEADER
    prepared = str(tmp_path / "prepared")
    for split in (time_split.TRAIN_SPLIT, time_split.EVAL_SPLIT):
        _write_csv(os.path.join(prepared, split, "data.csv"), header, EDGE_ROWS)
    _write_csv(os.path.join(prepared, time_split.TRAIN_SPLIT, "plain.csv"), header, PLAIN_ROWS)
    _run_tfx_csv_example_gen(prepared, str(tmp_path / "tfx"))
    _run_tfx_csv_example_gen(
        prepared, str(tmp_path / "ours"), data_prep_executor.ExampleGenExecutor()
    )
    for split in ("train", "eval"):
        assert _read_split(str(tmp_path / "ours"), split) == _read_split(
            str(tmp_path / "tfx"), split
        )


def _batched_examples(files: list[str], header: list[str], batch_bytes: int) -> list[bytes]:
    """Runs `BatchedCsvToExample` alone and returns its serialized examples."""
    prefix = os.path.join(os.path.dirname(files[0]), f"out_{batch_bytes}", "examples")
    with beam.Pipeline() as pipeline:
        examples = pipeline | csv_batches.BatchedCsvToExample(files, header, batch_bytes)
        _ = examples | beam.io.WriteToTFRecord(prefix)
    written = tf.io.gfile.glob(prefix + "*")
    return list(tf.data.TFRecordDataset(written).as_numpy_iterator())


def test_small_batches_infer_the_split_type_and_join_records_across_batches(tmp_path) -> None:
    # Batches of a few lines: types seen in different batches must combine (INT in one, FLOAT
    # in another), and a quoted newline must join lines that fall in different batches.
    path = str(tmp_path / "prepared" / "train" / "data.csv")
    plain = str(tmp_path / "prepared" / "train" / "plain.csv")
    _write_csv(path, EDGE_HEADER, EDGE_ROWS)
    _write_csv(plain, EDGE_HEADER, PLAIN_ROWS)
    _write_csv(str(tmp_path / "prepared" / "eval" / "data.csv"), EDGE_HEADER, EDGE_ROWS)
    _run_tfx_csv_example_gen(str(tmp_path / "prepared"), str(tmp_path / "tfx"))
    expected = _read_split(str(tmp_path / "tfx"), "train")
    for batch_bytes in (1, 16, 100):
        got = collections.Counter(
            _canonical(e) for e in _batched_examples([path, plain], EDGE_HEADER, batch_bytes)
        )
        assert got == expected, batch_bytes


def test_halfway_over_float32_max_converts_as_the_installed_protobuf_does() -> None:
    # The one double whose float32 value depends on protobuf: tfx-1.16 pins 3.20.3 (C++ setter:
    # FLT_MAX), tfx-1.21 pins 6.33 (upb: infinity). CsvExampleGen writes what protobuf gives.
    from google.protobuf import __version__ as protobuf_version

    expected = struct.unpack("<f", struct.pack("<f", 3.4028234663852886e38))[0]
    if int(protobuf_version.split(".")[0]) >= 6:
        expected = float("inf")
    cells = pa.array(["3.4028235677973366e38", "-3.4028235677973366e38"])
    assert csv_batches._float_values(cells).to_pylist() == [expected, -expected], protobuf_version


@pytest.mark.parametrize(
    "text",
    [
        "1,a\n2,b\n",
        "1,a\n\n2,b",  # a blank line; no newline at the end
        " 1 , a \n,\n日本,é\n",  # spaces kept, empty cells
        "1,a\n2\n",  # a short row: Arrow declines, Python raises
        "1,a,3\n",  # a long row
        "\n\n",  # blank lines only
    ],
)
def test_arrow_reader_gives_python_csv_cells_or_declines(tmp_path, text: str) -> None:
    arrow = csv_batches.CsvRecordParser("f.csv", ["x", "y"])._parse_with_arrow(text.encode())
    try:
        python = csv_batches.rows_to_columns(
            list(csv.reader(text.split("\n"))), ["x", "y"], "f.csv"
        )
    except ValueError:
        assert arrow is None
        return
    assert arrow is not None
    assert arrow.equals(python)


@pytest.mark.parametrize(
    "cell",
    [
        "0", "-0", "007", "123456789012345678", "1234567890123456789", "-9223372036854775809",
        " 7", "7 ", "+7", "1_0", "0x10", "1.", ".5", "-.5", "1e5", "1E+05", "1e100", "1e-300",
        "5e", "e5", "-", ".", "inf", "-inf", "NaN", "infinity", "1_0.5", "١٢", "1,5", "abc",
    ],
)  # fmt: skip
def test_cell_types_follow_tfx_bsl(cell: str) -> None:
    batch = csv_batches.rows_to_columns([[cell]], ["c"], "test")
    assert csv_batches.batch_types(batch) == [csv_decoder._InferValueType(cell.encode())]


def test_rows_with_the_wrong_number_of_cells_are_named(tmp_path) -> None:
    path = str(tmp_path / "data.csv")
    with open(path, "w") as f:
        f.write("a,b\n1,2\n3\n")
    with pytest.raises(ValueError, match=r"1 cells but the header has 2 columns"):
        _batched_examples([path], ["a", "b"], 1 << 20)


def test_unbalanced_quotes_are_an_error(tmp_path) -> None:
    path = str(tmp_path / "data.csv")
    with open(path, "w") as f:
        f.write('a,b\n1,"2\n')
    with pytest.raises(ValueError, match="unbalanced quotes"):
        _batched_examples([path], ["a", "b"], 1 << 20)


def test_repeated_column_names_are_a_data_error_not_the_last_column_winning(tmp_path) -> None:
    # TFX's CsvExampleGen keeps each name's last cell: every `fare` would be the second column's.
    prepared = str(tmp_path / "prepared")
    for split in (time_split.TRAIN_SPLIT, time_split.EVAL_SPLIT):
        _write_csv(
            os.path.join(prepared, split, "data.csv"), ["fare", "a", "fare"], [["1", "x", "999"]]
        )
    with pytest.raises(source_lib.DataError, match=r"column 'fare' appears 2 times in the header"):
        _run_ours(prepared, str(tmp_path / "ours"))


def test_a_byte_order_mark_is_dropped_from_the_first_column_name(tmp_path) -> None:
    prepared = str(tmp_path / "prepared")
    for split in (time_split.TRAIN_SPLIT, time_split.EVAL_SPLIT):
        os.makedirs(os.path.join(prepared, split))
        with open(os.path.join(prepared, split, "data.csv"), "wb") as f:
            f.write(b"\xef\xbb\xbfpickup_community_area,fare\n8,1.5\n")
    ours = _run_ours(prepared, str(tmp_path / "ours"))
    [(features, _)] = _read_split(ours.uri, "train").items()
    assert [name for name, _, _ in features] == ["fare", "pickup_community_area"]


def test_comparison_sees_kind_value_and_empty_feature_differences() -> None:
    # The comparison must see value, kind and NaN-bit differences, or the tests above prove little.
    def example(**features: tf.train.Feature) -> bytes:
        return tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString()

    floats = tf.train.Feature(float_list=tf.train.FloatList(value=[1.0]))
    ints = tf.train.Feature(int64_list=tf.train.Int64List(value=[1]))
    empty_ints = tf.train.Feature(int64_list=tf.train.Int64List())
    assert _canonical(example(a=floats)) != _canonical(example(a=ints))
    assert _canonical(example(a=empty_ints)) != _canonical(example(a=tf.train.Feature()))
    nan = tf.train.Feature(float_list=tf.train.FloatList(value=[float("nan")]))
    assert _canonical(example(a=nan)) == _canonical(example(a=nan))


def test_a_file_changed_between_the_passes_is_an_error(tmp_path) -> None:
    path = str(tmp_path / "data.csv")
    _write_csv(path, ["a", "b"], [["1", "x"], ["2", "y"]])
    start = len("a,b\n")
    span = csv_batches.Span(path, 0, 0, start, start + len("1,x\n2,y\n"), 2, ())
    assert csv_batches.parse_span(span, ["a", "b"]).num_rows == 2
    with open(path, "w") as f:
        f.write("a,b\n1,x\n\n\n\n")  # The same bytes hold one record now.
    with pytest.raises(ValueError, match="changed while being read"):
        csv_batches.parse_span(span, ["a", "b"])
