"""CSV to serialized tf.Examples in batches: CsvExampleGen's output, decoded column-wise in C++.

TFX's CsvExampleGen (`tfx/components/example_gen/csv_example_gen/executor.py`) reads a split
line by line, parses each line with tfx_bsl's `csv_decoder.ParseCSVLine`, infers each column's
type over the whole split with `csv_decoder.ColumnTypeInferrer`, builds one `tf.train.Example`
per row in Python (`_ParsedCsvToTfExample`), and sends every example through Beam's reshuffle
and TFRecord sink (`write_split.WriteSplit`). That costs several Python calls per cell and per
row, and holds the whole split in memory. Here the same examples are made in two passes over
spans of whole records (about `DEFAULT_BATCH_BYTES` each): the first parses each span and keeps
only its column types; the second parses it again, converts each column with Arrow compute
kernels to the split's types, encodes the rows with tfx_bsl's C++ `RecordBatchToExamplesEncoder`
and writes them with TensorFlow's C++ TFRecord writer, one file per span. Spans without quotes
are parsed by Arrow's C++ CSV reader, others by Python's `csv` as TFX does; cells the kernels
cannot decide exactly as Python's `int()`/`float()` would are decided by those functions.

The semantics kept from TFX (files named are in the installed tfx / tfx_bsl 1.16):
- records: the header line is skipped; a record is complete when its lines hold an even number
  of `"` (`_CsvLineBuffer`); each record is parsed by one `csv.reader` fed that record
  (`csv_decoder._CSVRecordReader`); blank records are skipped; other records must have one cell
  per header column.
- types (`csv_decoder._InferValueType`, `ColumnTypeInferrer`): an empty cell says nothing; a cell
  is INT if `int(cell)` works and fits int64, STRING if it works but does not fit, else FLOAT if
  `float(cell)` works, else STRING; a column takes the highest type of its cells over the split
  (INT < FLOAT < STRING); a column with no non-empty cell is UNKNOWN.
- values (`_int_handler`, `_float_handler`, `_bytes_handler`): every row has every column; an
  empty cell is a feature of the column's kind with no value; an UNKNOWN column is a feature
  with no kind; INT cells are `int(cell)`, FLOAT cells `float(cell)` stored as float32, STRING
  cells their UTF-8 bytes.
"""

import csv
import dataclasses
import functools
import os
import uuid
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import tensorflow as tf
from absl import logging
from pyarrow import csv as pa_csv
from tfx.components.example_gen import write_split
from tfx.dsl.io import fileio
from tfx.types import standard_component_specs
from tfx.utils import io_utils
from tfx_bsl.coders import example_coder
from tfx_bsl.coders.csv_decoder import ColumnType

from components.data_prep.source import header_names

# Cells whose type and value Arrow's kernels give exactly as Python does. Anything else (signs,
# spaces, underscores, `inf`/`nan`, more digits or exponent digits) is left to Python.
# At most 18 digits always fits int64, so such a cell is INT; longer ones may not fit.
_STRICT_INT = r"^-?[0-9]{1,18}$"
# A decimal point or an exponent makes `int()` fail and `float()` succeed.
_STRICT_FLOAT = r"^-?([0-9]+\.[0-9]*|\.[0-9]+)([eE][-+]?[0-9]{1,2})?$|^-?[0-9]+[eE][-+]?[0-9]{1,2}$"
_INT64_MIN = int(np.iinfo(np.int64).min)
_INT64_MAX = int(np.iinfo(np.int64).max)
# protobuf 3.20's C++ float setter (what `tf.train.FloatList(value=[x])` uses on tfx-1.16) maps the
# one double halfway between FLT_MAX and the next float32 step to FLT_MAX; a plain float32 cast, and
# protobuf 6's upb (tfx-1.21), round it to infinity. Every other double converts the same way both
# ways (probed on protobuf 3.20). _halfway_over_max_becomes_max() asks the installed protobuf.
_FLOAT32_MAX = float(np.finfo(np.float32).max)
_FLOAT32_HALFWAY_OVER_MAX = 3.4028235677973366e38
# Bytes with which Arrow's CSV reader could split text differently from Python's `csv` module
# (quotes, carriage returns, NULs; a byte-order mark Arrow drops only at the start).
_NEEDS_PYTHON_CSV = (b'"', b"\r", b"\x00")
_BYTE_ORDER_MARK = b"\xef\xbb\xbf"
# Bytes of CSV text read and decoded per batch: large enough that the per-batch work is small
# next to the per-cell work, small enough that a batch of a big split stays a few tens of MB.
DEFAULT_BATCH_BYTES = 8 << 20


def python_cell_type(cell: bytes) -> ColumnType:
    """A non-empty cell's type by TFX's rule (`csv_decoder._InferValueType`)."""
    try:
        value = int(cell)
    except ValueError:
        try:
            float(cell)
        except ValueError:
            return ColumnType.STRING
        return ColumnType.FLOAT
    return ColumnType.INT if _INT64_MIN <= value <= _INT64_MAX else ColumnType.STRING


class _RepeatedLine:
    """An endless iterator of the current record, so one `csv.reader` parses one record per call.

    Follows `csv_decoder._MutableRepeat`: a record whose quoting is still open at its end is fed
    again, exactly as TFX's reader would.
    """

    def __init__(self) -> None:
        self.line = ""

    def __iter__(self) -> "_RepeatedLine":
        return self

    def __next__(self) -> str:
        return self.line


class CsvRecordParser:
    """Parses one file's CSV text into batches of string columns, as CsvExampleGen parses it."""

    def __init__(self, path: str, column_names: Sequence[str]) -> None:
        self._path = path
        self._column_names = list(column_names)
        self._pending: list[str] = []  # lines of a record whose quotes are not yet balanced
        self._quotes = 0
        self.pending_bytes = 0  # their size in the file
        self._line = _RepeatedLine()
        self._reader = csv.reader(self._line, delimiter=",")

    def parse(self, chunk: bytes) -> pa.RecordBatch:
        """The complete records in `chunk` (whole lines); keeps an open record for later.

        Raises:
          ValueError: If a record has a different number of cells than the header has columns.
          UnicodeDecodeError: If the text is not UTF-8.
        """
        if (
            not self._pending
            and not chunk.startswith(_BYTE_ORDER_MARK)
            and not any(special in chunk for special in _NEEDS_PYTHON_CSV)
        ):
            batch = self._parse_with_arrow(chunk)
            if batch is not None:
                return batch
        return rows_to_columns(
            self._parse_rows(chunk.decode("utf-8")), self._column_names, self._path
        )

    def _parse_with_arrow(self, chunk: bytes) -> pa.RecordBatch | None:
        """Arrow's C++ reader's columns, or None to let Python's `csv` decide (or fail).

        Without quotes, carriage returns, NULs or a leading byte-order mark, a line is one
        record whose cells are the text between commas, in both readers; blank lines are
        skipped by both. Anything Arrow rejects (a wrong cell count, bad UTF-8) or reads where
        Python's reader would fail (a cell over `csv.field_size_limit()`) goes to Python.
        """
        # On Python 3.10 each Arrow reader call made with signal handlers on scans the whole
        # heap (`gc.get_referrers`, pyarrow's workaround for bpo-42248): tens of ms per span.
        # Nothing here needs Ctrl-C to interrupt Arrow mid-call; pyarrow's default is back after.
        pa.enable_signal_handlers(False)
        try:
            table = pa_csv.read_csv(
                pa.py_buffer(chunk),
                read_options=pa_csv.ReadOptions(column_names=self._column_names),
                parse_options=pa_csv.ParseOptions(
                    delimiter=",", quote_char=False, ignore_empty_lines=True
                ),
                convert_options=pa_csv.ConvertOptions(
                    column_types={name: pa.string() for name in self._column_names},
                    strings_can_be_null=False,
                    check_utf8=True,
                ),
            )
        except pa.ArrowInvalid:
            return None
        finally:
            pa.enable_signal_handlers(True)
        table = table.combine_chunks()
        limit = csv.field_size_limit()
        for column in table.columns:
            if len(column) and pc.max(pc.binary_length(column)).as_py() > limit:
                return None
        if table.num_rows == 0:
            return rows_to_columns([], self._column_names, self._path)
        return pa.RecordBatch.from_arrays(
            [column.chunk(0) for column in table.columns], self._column_names
        )

    def _parse_rows(self, text: str) -> list[list[str]]:
        if not self._pending and '"' not in text:
            # Without quotes every line is one record, and one reader over all the lines gives
            # the cells a reader per line would.
            return list(csv.reader(text.split("\n"), delimiter=","))
        rows = []
        for line in _lines(text):
            self._pending.append(line)
            self._quotes += line.count('"')
            if self._quotes % 2 == 0:
                self._line.line = "".join(self._pending)
                self._pending.clear()
                self._quotes = 0
                rows.append(next(self._reader))
        self.pending_bytes = sum(len(line.encode("utf-8")) for line in self._pending)
        return rows

    def finish(self) -> None:
        """Raises ValueError if the file ended inside a quoted record (as CsvExampleGen does)."""
        if self._pending:
            raise ValueError(f"Csv record had unbalanced quotes. File: {self._path}")


def _lines(text: str) -> list[str]:
    """`text` split after each newline only (TFX iterates a binary file's `\\n` lines)."""
    parts = text.split("\n")
    lines = [part + "\n" for part in parts[:-1]]
    if parts[-1]:
        lines.append(parts[-1])
    return lines


def read_text_batches(path: str, batch_bytes: int) -> Iterator[tuple[int, bytes]]:
    """Yields the file's bytes after its header line in pieces of whole lines, with offsets."""
    with beam.io.filesystems.FileSystems.open(path) as f:
        # The header; CsvExampleGen reads column names from it separately.
        offset = len(f.readline())
        rest = b""
        while True:
            chunk = f.read(batch_bytes)
            if not chunk:
                break
            chunk = rest + chunk
            cut = chunk.rfind(b"\n") + 1
            rest = chunk[cut:]
            if cut:
                yield offset, chunk[:cut]
                offset += cut
        if rest:
            yield offset, rest


def read_span(path: str, start: int, end: int) -> bytes:
    """Bytes `[start, end)` of a file."""
    with beam.io.filesystems.FileSystems.open(path) as f:
        f.seek(start)
        return f.read(end - start)


def _strict_matches(values: pa.Array, pattern: str) -> np.ndarray:
    return pc.match_substring_regex(values, pattern).to_numpy(zero_copy_only=False)


def column_type(values: pa.Array) -> ColumnType:
    """The highest type (TFX's rule) of a column's non-empty cells; UNKNOWN if there are none."""
    if len(values) == 0:
        return ColumnType.UNKNOWN
    is_int = _strict_matches(values, _STRICT_INT)
    if is_int.all():
        return ColumnType.INT
    is_float = _strict_matches(values, _STRICT_FLOAT)
    found = ColumnType.FLOAT if is_float.any() else ColumnType.INT
    others = values.filter(pa.array(~(is_int | is_float)))
    for cell in pc.unique(others).to_pylist():
        found = max(found, python_cell_type(cell.encode()))
        if found == ColumnType.STRING:
            break
    return found


def _int_values(values: pa.Array) -> pa.Array:
    if _strict_matches(values, _STRICT_INT).all():
        return pc.cast(values, pa.int64())
    return pa.array([int(cell.encode()) for cell in values.to_pylist()], pa.int64())


@functools.cache
def _halfway_over_max_becomes_max() -> bool:
    """Whether protobuf's float setter gives FLT_MAX (3.20, C++) or infinity (6, upb) there."""
    return tf.train.FloatList(value=[_FLOAT32_HALFWAY_OVER_MAX]).value[0] == _FLOAT32_MAX


def _float_values(values: pa.Array) -> pa.Array:
    strict = _strict_matches(values, _STRICT_INT) | _strict_matches(values, _STRICT_FLOAT)
    if strict.all():
        doubles = pc.cast(values, pa.float64()).to_numpy(zero_copy_only=False)
    else:
        doubles = np.array([float(cell.encode()) for cell in values.to_pylist()], np.float64)
    halfway = np.abs(doubles) == _FLOAT32_HALFWAY_OVER_MAX
    if halfway.any() and _halfway_over_max_becomes_max():
        doubles = np.where(halfway, np.copysign(_FLOAT32_MAX, doubles), doubles)
    with np.errstate(over="ignore"):  # Too large for float32 is infinity, as in protobuf.
        return pa.array(doubles.astype(np.float32), pa.float32())


def to_feature_column(cells: pa.Array, kind: ColumnType) -> pa.Array:
    """One column as a list array that tfx_bsl encodes into CsvExampleGen's features.

    The encoder writes a null list as a feature with no kind and an empty list as a feature of
    the list's kind with no value, which are what CsvExampleGen writes for an UNKNOWN column and
    for an empty cell.
    """
    if kind == ColumnType.UNKNOWN:
        return pa.nulls(len(cells), pa.large_list(pa.int64()))
    present = pc.greater(pc.binary_length(cells), 0)
    values = cells.filter(present)
    counts = present.to_numpy(zero_copy_only=False).astype(np.int64)
    offsets = pa.array(np.concatenate([[0], np.cumsum(counts)]), pa.int64())
    if kind == ColumnType.INT:
        items = _int_values(values)
    elif kind == ColumnType.FLOAT:
        items = _float_values(values)
    elif kind == ColumnType.STRING:
        items = pc.cast(values, pa.large_binary())
    else:
        raise ValueError(f"Column type {kind!r} has no feature kind")
    return pa.LargeListArray.from_arrays(offsets, items)


def rows_to_columns(
    rows: Sequence[Sequence[str]], column_names: Sequence[str], where: str
) -> pa.RecordBatch:
    """The non-blank rows as a batch of string columns.

    Raises:
      ValueError: If a row has a different number of cells than the header has columns.
    """
    rows = [row for row in rows if row]
    width = len(column_names)
    for row in rows:
        if len(row) != width:
            raise ValueError(
                f"{where}: a CSV record has {len(row)} cells but the header has {width} "
                f"columns {list(column_names)}: {row}"
            )
    if not rows:
        return pa.RecordBatch.from_arrays(
            [pa.array([], pa.string()) for _ in column_names], list(column_names)
        )
    columns = [pa.array(column, pa.string()) for column in zip(*rows, strict=True)]
    return pa.RecordBatch.from_arrays(columns, list(column_names))


def batch_types(batch: pa.RecordBatch) -> list[ColumnType]:
    """Each column's highest type in this batch."""
    return [
        column_type(column.filter(pc.greater(pc.binary_length(column), 0)))
        for column in batch.columns
    ]


def highest_types(type_lists: Iterable[list[ColumnType]], width: int) -> list[ColumnType]:
    """Per column, the highest of the batches' types (UNKNOWN if no batch had a value)."""
    result = [ColumnType.UNKNOWN] * width
    for types in type_lists:
        result = [max(a, b) for a, b in zip(result, types, strict=True)]
    return result


def encode_batch(
    batch: pa.RecordBatch,
    types: Sequence[ColumnType],
    encoder: example_coder.RecordBatchToExamplesEncoder,
) -> list[bytes]:
    """The batch's rows as serialized tf.Examples of the split's column types."""
    columns = [
        to_feature_column(column, kind) for column, kind in zip(batch.columns, types, strict=True)
    ]
    return encoder.encode(pa.RecordBatch.from_arrays(columns, batch.schema.names))


@dataclasses.dataclass(frozen=True)
class Span:
    """A run of whole records in one CSV file, and its columns' types.

    The first pass finds the spans and their types without keeping any data; the second reads
    each span again to convert it, so memory holds one span at a time, not the split.
    `file_index` and `index` name the span's output file, so that reading the files in name
    order gives the rows in input order (as CsvExampleGen on the DirectRunner mostly does).
    """

    path: str
    file_index: int
    index: int
    start: int
    end: int
    rows: int
    types: tuple[ColumnType, ...]


class _FindSpans(beam.DoFn):
    """A (file index, CSV file) pair to the file's spans of about `batch_bytes` each."""

    def __init__(self, column_names: list[str], batch_bytes: int) -> None:
        self._column_names = column_names
        self._batch_bytes = batch_bytes

    def process(self, indexed_path: tuple[int, str]) -> Iterator[Span]:
        file_index, path = indexed_path
        parser = CsvRecordParser(path, self._column_names)
        index = 0
        for offset, chunk in read_text_batches(path, self._batch_bytes):
            # A record still open at the last chunk's end starts this span.
            start = offset - parser.pending_bytes
            batch = parser.parse(chunk)
            if batch.num_rows:
                end = offset + len(chunk) - parser.pending_bytes
                types = tuple(batch_types(batch))
                yield Span(path, file_index, index, start, end, batch.num_rows, types)
                index += 1
        parser.finish()


def parse_span(span: Span, column_names: Sequence[str]) -> pa.RecordBatch:
    """The span's records as string columns, read again from its file.

    Raises:
      ValueError: If the file no longer holds the span's records (it changed between passes).
    """
    parser = CsvRecordParser(span.path, column_names)
    batch = parser.parse(read_span(span.path, span.start, span.end))
    parser.finish()
    if batch.num_rows != span.rows:
        raise ValueError(
            f"{span.path} bytes {span.start}-{span.end} held {span.rows} records in the first "
            f"pass and {batch.num_rows} now: the file changed while being read"
        )
    return batch


class _HighestTypes(beam.CombineFn):
    """Combines per-batch column types into the split's (ColumnTypeInferrer's order)."""

    def __init__(self, width: int) -> None:
        self._width = width

    def create_accumulator(self) -> list[ColumnType]:
        return [ColumnType.UNKNOWN] * self._width

    def add_input(self, accumulator: list[ColumnType], types: list[ColumnType]) -> list[ColumnType]:
        return highest_types([accumulator, types], self._width)

    def merge_accumulators(self, accumulators: Iterable[list[ColumnType]]) -> list[ColumnType]:
        return highest_types(accumulators, self._width)

    def extract_output(self, accumulator: list[ColumnType]) -> list[ColumnType]:
        return accumulator


class _EncodeSpan(beam.DoFn):
    """A span to serialized tf.Examples, given the split's column types."""

    def __init__(self, column_names: list[str]) -> None:
        self._column_names = column_names

    def setup(self) -> None:
        self._encoder = example_coder.RecordBatchToExamplesEncoder()

    def process(self, span: Span, types: list[ColumnType]) -> Iterator[bytes]:
        yield from encode_batch(parse_span(span, self._column_names), types, self._encoder)


class _WriteSpan(beam.DoFn):
    """A span to a gzipped TFRecord file of serialized tf.Examples; yields its row count.

    One file per span, named by its place in the input, written by TensorFlow's C++ writer
    under a temporary name and then renamed, so a retried span replaces its file whole.
    """

    def __init__(self, column_names: list[str], output_dir: str) -> None:
        self._column_names = column_names
        self._output_dir = output_dir

    def setup(self) -> None:
        self._encoder = example_coder.RecordBatchToExamplesEncoder()
        self._rows = beam.metrics.Metrics.counter(write_split.METRICS_NAMESPACE, "num_instances")

    def process(self, span: Span, types: list[ColumnType]) -> Iterator[int]:
        examples = encode_batch(parse_span(span, self._column_names), types, self._encoder)
        name = (
            f"{write_split.DEFAULT_TF_RECORD_FILE_NAME}-{span.file_index:05d}-{span.index:05d}.gz"
        )
        path = os.path.join(self._output_dir, name)
        temporary = os.path.join(self._output_dir, f".{name}.{uuid.uuid4().hex}.tmp")
        tf.io.gfile.makedirs(self._output_dir)
        with tf.io.TFRecordWriter(temporary, tf.io.TFRecordOptions(compression_type="GZIP")) as w:
            for example in examples:
                w.write(example)
        tf.io.gfile.rename(temporary, path, overwrite=True)
        self._rows.inc(len(examples))
        yield len(examples)


def _find_typed_spans(
    pipeline: Any, csv_files: list[str], column_names: list[str], batch_bytes: int
) -> tuple[beam.PCollection, Any]:
    """The files' spans and, as a side input, the split's column types.

    Raises:
      DataError: If a column name repeats (TFX would keep each name's last cell).
    """
    header_names(csv_files[0] if csv_files else "<no file>", column_names)
    spans = (
        pipeline
        | "CreateFilenames" >> beam.Create(list(enumerate(csv_files)))
        | "FindSpans" >> beam.ParDo(_FindSpans(column_names, batch_bytes))
        # Spans, not files, are the units of work of the second pass: spread them over workers.
        | "SpreadSpans" >> beam.Reshuffle()
    )
    types = beam.pvalue.AsSingleton(
        spans
        | "SpanTypes" >> beam.Map(lambda span: list(span.types))
        | "SplitTypes" >> beam.CombineGlobally(_HighestTypes(len(column_names)))
    )
    return spans, types


class BatchedCsvToExample(beam.PTransform):
    """CSV files with one header to serialized tf.Examples, as CsvExampleGen would make them."""

    def __init__(
        self, csv_files: list[str], column_names: list[str], batch_bytes: int = DEFAULT_BATCH_BYTES
    ) -> None:
        """Reads `csv_files` (all with the header `column_names`, which must be unique)."""
        super().__init__()
        self._csv_files = csv_files
        self._column_names = column_names
        self._batch_bytes = batch_bytes

    def expand(self, pipeline: Any) -> beam.PCollection:
        spans, types = _find_typed_spans(
            pipeline, self._csv_files, self._column_names, self._batch_bytes
        )
        return spans | "EncodeSpans" >> beam.ParDo(_EncodeSpan(self._column_names), types)


class BatchedCsvToExampleFiles(beam.PTransform):
    """CSV files with one header to gzipped TFRecords of CsvExampleGen's tf.Examples.

    Writes one file per span into `output_dir` (one empty file if there are no rows); returns
    the PCollection of the split's row count.
    """

    def __init__(
        self,
        csv_files: list[str],
        column_names: list[str],
        output_dir: str,
        batch_bytes: int = DEFAULT_BATCH_BYTES,
    ) -> None:
        super().__init__()
        self._csv_files = csv_files
        self._column_names = column_names
        self._output_dir = output_dir
        self._batch_bytes = batch_bytes

    def expand(self, pipeline: Any) -> beam.PCollection:
        spans, types = _find_typed_spans(
            pipeline, self._csv_files, self._column_names, self._batch_bytes
        )
        return (
            spans
            | "WriteSpans" >> beam.ParDo(_WriteSpan(self._column_names, self._output_dir), types)
            | "CountRows" >> beam.CombineGlobally(sum)
            | "WriteEmptyIfNoRows" >> beam.Map(_write_empty_if_no_rows, self._output_dir)
        )


def _write_empty_if_no_rows(rows: int, output_dir: str) -> int:
    """Leaves one empty TFRecord file for a split without rows, as Beam's TFRecord sink does."""
    if rows == 0:
        tf.io.gfile.makedirs(output_dir)
        name = f"{write_split.DEFAULT_TF_RECORD_FILE_NAME}-00000-00000.gz"
        with tf.io.TFRecordWriter(
            os.path.join(output_dir, name), tf.io.TFRecordOptions(compression_type="GZIP")
        ):
            pass
    return rows


def split_csv_files(
    exec_properties: dict[str, Any], split_pattern: str
) -> tuple[list[str], list[str]]:
    """The split's CSV files and their header, checked as CsvExampleGen's `_CsvToExample` does.

    The header is also held to DataPrep's rules (`source.header_names`): a leading byte-order
    mark is dropped, and a repeated, empty or unreadable name is a data error. CsvExampleGen
    itself would keep the mark in the first name and let the last of two same-named columns
    win in every example.

    Raises:
      RuntimeError: If the pattern matches no file or the files' headers differ.
      DataError: If the header breaks DataPrep's rules.
    """
    input_base = exec_properties[standard_component_specs.INPUT_BASE_KEY]
    csv_pattern = os.path.join(input_base, split_pattern)
    csv_files = [os.fsdecode(path) for path in fileio.glob(csv_pattern)]
    if not csv_files:
        raise RuntimeError(f"Split pattern {csv_pattern} does not match any files.")
    column_names = io_utils.load_csv_column_names(csv_files[0])
    for csv_file in csv_files[1:]:
        if io_utils.load_csv_column_names(csv_file) != column_names:
            raise RuntimeError(
                f"Files in same split {csv_pattern} have different header: "
                f"{csv_file} differs from {csv_files[0]}."
            )
    return csv_files, header_names(csv_files[0], column_names)


class CsvToExamples(beam.PTransform):
    """One input split's CSV files to serialized tf.Examples; ExampleGen's input transform.

    Takes what `BaseExampleGenExecutor.GetInputSourceToExamplePTransform` is called with and runs
    `BatchedCsvToExample`.
    """

    def __init__(self, exec_properties: dict[str, Any], split_pattern: str) -> None:
        super().__init__()
        self._exec_properties = exec_properties
        self._split_pattern = split_pattern

    def expand(self, pipeline: Any) -> beam.PCollection:
        csv_files, column_names = split_csv_files(self._exec_properties, self._split_pattern)
        return pipeline | "BatchedCsvToExample" >> BatchedCsvToExample(csv_files, column_names)


class CsvToExampleFiles(beam.PTransform):
    """One input split's CSV files to its Examples split directory, as gzipped TFRecords."""

    def __init__(
        self, exec_properties: dict[str, Any], split_pattern: str, output_dir: str
    ) -> None:
        super().__init__()
        self._exec_properties = exec_properties
        self._split_pattern = split_pattern
        self._output_dir = output_dir

    def expand(self, pipeline: Any) -> Any:
        csv_files, column_names = split_csv_files(self._exec_properties, self._split_pattern)
        logging.info("Converting %s to tf.Examples in batches", csv_files)
        return pipeline | "BatchedCsvToExampleFiles" >> BatchedCsvToExampleFiles(
            csv_files, column_names, self._output_dir
        )
