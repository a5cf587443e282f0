"""Executors of DataPrep (the time split) and ExampleGen (CsvExampleGen on its output)."""

import json
from typing import Any

import apache_beam as beam
from absl import logging
from tfx import types
from tfx.components.example_gen import write_split
from tfx.components.example_gen.csv_example_gen import executor as csv_executor
from tfx.components.util import examples_utils
from tfx.dsl.components.base import base_executor
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import proto_utils

from components.data_prep import csv_batches, time_split
from components.data_prep.source import DataError

SOURCE_URI_KEY = "source_uri"
SOURCE_FINGERPRINT_KEY = "source_fingerprint"
EVAL_FRACTION_KEY = "eval_fraction"
MAX_ROWS_KEY = "max_rows"
TIME_COLUMN_KEY = "time_column"
PREPARED_DATA_KEY = "prepared_data"
EXAMPLES_KEY = standard_component_specs.EXAMPLES_KEY

# Custom properties of the PreparedData artifact (the run's data metadata).
DATA_VERSION_PROPERTY = "data_version"
TRAIN_ROWS_PROPERTY = "train_rows"
EVAL_ROWS_PROPERTY = "eval_rows"
TIME_RANGE_PROPERTIES = ("train_start_time", "train_end_time", "eval_start_time", "eval_end_time")
SOURCE_URI_PROPERTY = "source_uri"
SOURCE_FINGERPRINT_PROPERTY = "source_fingerprint"
SOURCE_FILES_PROPERTY = "source_files"


class Executor(base_executor.BaseExecutor):
    """DataPrep: writes the time split into `prepared_data` and records what it holds."""

    def Do(
        self,
        input_dict: dict[str, list[types.Artifact]],
        output_dict: dict[str, list[types.Artifact]],
        exec_properties: dict[str, Any],
    ) -> None:
        """Splits the source CSVs by time into the output artifact.

        Args:
          input_dict: Unused (DataPrep reads an external source).
          output_dict: `prepared_data` (PreparedData).
          exec_properties: `source_uri`, `source_fingerprint`, `eval_fraction`, optional
            `max_rows` and `time_column`.

        Raises:
          DataError: On unreadable or malformed source data, or when the source no longer has
            the fingerprint the run was keyed on (it changed after the run started).
        """
        output = artifact_utils.get_single_instance(output_dict[PREPARED_DATA_KEY])
        source_uri = exec_properties[SOURCE_URI_KEY]
        prepared = time_split.prepare_time_split(
            source_uri,
            output.uri,
            eval_fraction=float(exec_properties[EVAL_FRACTION_KEY]),
            max_rows=exec_properties.get(MAX_ROWS_KEY) or None,
            time_column=exec_properties.get(TIME_COLUMN_KEY) or time_split.DEFAULT_TIME_COLUMN,
        )
        expected = exec_properties[SOURCE_FINGERPRINT_KEY]
        # The fingerprint is the orchestrator's cache key for new data: if the bytes read differ,
        # this output would be cached under the wrong key, so stop instead.
        if prepared.source_fingerprint != expected:
            raise DataError(
                f"Source {source_uri} changed after the run fingerprinted it (run keyed on "
                f"{expected}, read {prepared.source_fingerprint}); start a new run"
            )
        output.set_string_custom_property(DATA_VERSION_PROPERTY, prepared.data_version)
        output.set_int_custom_property(TRAIN_ROWS_PROPERTY, prepared.train_rows)
        output.set_int_custom_property(EVAL_ROWS_PROPERTY, prepared.eval_rows)
        for name, value in zip(
            TIME_RANGE_PROPERTIES,
            (*prepared.train_time_range, *prepared.eval_time_range),
            strict=True,
        ):
            output.set_int_custom_property(name, value)
        output.set_string_custom_property(SOURCE_URI_PROPERTY, source_uri)
        output.set_string_custom_property(SOURCE_FINGERPRINT_PROPERTY, prepared.source_fingerprint)
        output.set_string_custom_property(
            SOURCE_FILES_PROPERTY,
            json.dumps([{"path": p, "sha256": h} for p, h in prepared.source_files]),
        )
        logging.info(
            "Prepared data %s: %d train rows, %d eval rows from %s",
            prepared.data_version,
            prepared.train_rows,
            prepared.eval_rows,
            source_uri,
        )


def prepared_input_config() -> example_gen_pb2.Input:
    """The split layout DataPrep writes, as CsvExampleGen's input config."""
    return example_gen_pb2.Input(
        splits=[
            example_gen_pb2.Input.Split(name=split, pattern=f"{split}/*")
            for split in (time_split.TRAIN_SPLIT, time_split.EVAL_SPLIT)
        ]
    )


def csv_example_gen_properties(input_base: str) -> dict[str, Any]:
    """The exec properties TFX's CsvExampleGen takes for DataPrep's output at `input_base`.

    DataPrep's split layout as the input config, the splits kept as they are, tf.Examples in
    gzipped TFRecords: what `ExampleGenExecutor` converts with, and what TFX's own executor is
    run with when it is compared with that one (tests, `bench/examplegen_bench.py`).
    """
    return {
        standard_component_specs.INPUT_BASE_KEY: input_base,
        standard_component_specs.INPUT_CONFIG_KEY: proto_utils.proto_to_json(
            prepared_input_config()
        ),
        standard_component_specs.OUTPUT_CONFIG_KEY: proto_utils.proto_to_json(
            example_gen_pb2.Output()
        ),
        standard_component_specs.OUTPUT_DATA_FORMAT_KEY: example_gen_pb2.FORMAT_TF_EXAMPLE,
        standard_component_specs.OUTPUT_FILE_FORMAT_KEY: example_gen_pb2.FORMAT_TFRECORDS_GZIP,
    }


class ExampleGenExecutor(csv_executor.Executor):
    """CsvExampleGen's executor on the PreparedData artifact, converting CSV rows in batches.

    It writes the examples CsvExampleGen would write for the same files (same features, kinds
    and values, rows in input order; see `csv_batches`) whose header follows DataPrep's rules
    (`source.header_names`: no repeated names, no byte-order mark), several times faster: rows
    are decoded column-wise and encoded and written in C++, instead of one Python-built
    `tf.train.Example` per row passing one by one through Beam's reshuffle and TFRecord sink.
    """

    def GetInputSourceToExamplePTransform(self) -> beam.PTransform:
        """The batched CSV conversion (`csv_batches.CsvToExamples`), one input split at a time."""
        return csv_batches.CsvToExamples  # type: ignore[return-value]

    def Do(
        self,
        input_dict: dict[str, list[types.Artifact]],
        output_dict: dict[str, list[types.Artifact]],
        exec_properties: dict[str, Any],
    ) -> None:
        """Converts `prepared_data`'s train and eval CSVs to `examples` splits.

        Follows `BaseExampleGenExecutor.Do` for input splits (split names, payload and file
        format properties, one gzipped TFRecord directory per split), writing each split with
        `csv_batches.CsvToExampleFiles` in place of `GenerateExamplesByBeam` + `WriteSplit`.

        Args:
          input_dict: `prepared_data` (PreparedData).
          output_dict: `examples` (Examples).
          exec_properties: None needed; CsvExampleGen's are filled in here.
        """
        prepared = artifact_utils.get_single_instance(input_dict[PREPARED_DATA_KEY])
        properties = {**exec_properties, **csv_example_gen_properties(prepared.uri)}
        input_config = prepared_input_config()
        self._log_startup(input_dict, output_dict, properties)
        examples = output_dict[EXAMPLES_KEY]
        split_names = [split.name for split in input_config.splits]
        artifact_utils.get_single_instance(
            examples
        ).split_names = artifact_utils.encode_split_names(split_names)
        with self._make_beam_pipeline() as pipeline:
            for split in input_config.splits:
                output_dir = artifact_utils.get_split_uri(examples, split.name)
                _ = pipeline | f"CsvToExampleFiles[{split.name}]" >> csv_batches.CsvToExampleFiles(
                    properties, split.pattern, output_dir
                )
        for artifact in examples:
            examples_utils.set_payload_format(artifact, example_gen_pb2.FORMAT_TF_EXAMPLE)
            examples_utils.set_file_format(
                artifact, write_split.to_file_format_str(example_gen_pb2.FORMAT_TFRECORDS_GZIP)
            )
        logging.info("Examples generated for splits %s from %s", split_names, prepared.uri)
