"""DataPrep and ExampleGen components: source CSVs -> time split -> standard Examples.

DataPrep is a pipeline step on every orchestrator, so a run needs only the location of the
source data. Its `source_fingerprint` parameter (a hash of the source bytes, computed by
whoever starts the run) is part of every orchestrator's cache key: new data re-runs DataPrep
and everything after it; unchanged data is a fully cached run.
"""

from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.orchestration import data_types
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter

from components.data_prep import executor
from components.data_prep.artifacts import PreparedData
from components.data_prep.time_split import DEFAULT_TIME_COLUMN


class DataPrepSpec(ComponentSpec):
    """Inputs, outputs and parameters of DataPrep."""

    PARAMETERS = {
        executor.SOURCE_URI_KEY: ExecutionParameter(type=str),
        executor.SOURCE_FINGERPRINT_KEY: ExecutionParameter(type=str),
        executor.EVAL_FRACTION_KEY: ExecutionParameter(type=float),
        executor.MAX_ROWS_KEY: ExecutionParameter(type=int, optional=True),
        executor.TIME_COLUMN_KEY: ExecutionParameter(type=str),
    }
    INPUTS: dict[str, ChannelParameter] = {}
    OUTPUTS = {executor.PREPARED_DATA_KEY: ChannelParameter(type=PreparedData)}


class DataPrep(base_component.BaseComponent):
    """Splits the source CSVs by time: every eval row strictly later than every train row."""

    SPEC_CLASS = DataPrepSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(
        self,
        source_uri: str | data_types.RuntimeParameter,
        source_fingerprint: str | data_types.RuntimeParameter,
        eval_fraction: float,
        max_rows: int | None = None,
        time_column: str = DEFAULT_TIME_COLUMN,
    ):
        """Builds the step.

        Args:
          source_uri: A CSV file or a directory of CSV files (local path or `gs://`); on KFP
            a runtime parameter.
          source_fingerprint: `components.data_prep.source.fingerprint_source(source_uri)`;
            on KFP a runtime parameter the compiler wires to the fingerprint task.
          eval_fraction: Approximate share of the newest rows held out for evaluation.
          max_rows: Keep an evenly spaced subset of this many rows; None keeps all.
          time_column: Integer Unix-time column ordering the rows.

        Raises:
          ValueError: On an empty source or fingerprint, `eval_fraction` outside (0, 1),
            `max_rows` < 2 or an empty time column.
        """
        for name, value in (
            ("source_uri", source_uri),
            ("source_fingerprint", source_fingerprint),
        ):
            if not isinstance(value, data_types.RuntimeParameter) and not value:
                raise ValueError(
                    f"DataPrep needs {name}: the source CSVs' location and "
                    "fingerprint_source() of it, computed where the run starts; got "
                    f"{value!r}."
                )
        if not 0.0 < eval_fraction < 1.0:
            raise ValueError(
                f"DataPrep needs eval_fraction in (0, 1), the share of newest rows held out; "
                f"got {eval_fraction!r}."
            )
        if max_rows is not None and max_rows < 2:
            raise ValueError(
                "DataPrep needs max_rows >= 2 (one train and one eval row) or None; "
                f"got {max_rows}."
            )
        if not time_column:
            raise ValueError("DataPrep needs the name of the time column; got an empty name.")
        super().__init__(
            spec=DataPrepSpec(
                source_uri=source_uri,
                source_fingerprint=source_fingerprint,
                eval_fraction=eval_fraction,
                max_rows=max_rows,
                time_column=time_column,
                prepared_data=types.Channel(type=PreparedData),
            )
        )


class ExampleGenSpec(ComponentSpec):
    """Inputs and outputs of ExampleGen."""

    PARAMETERS: dict[str, ExecutionParameter] = {}
    INPUTS = {executor.PREPARED_DATA_KEY: ChannelParameter(type=PreparedData)}
    OUTPUTS = {executor.EXAMPLES_KEY: ChannelParameter(type=standard_artifacts.Examples)}


class ExampleGen(base_component.BaseComponent):
    """Converts DataPrep's train and eval CSVs to `Examples` (CsvExampleGen's executor)."""

    SPEC_CLASS = ExampleGenSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.ExampleGenExecutor)

    def __init__(self, prepared_data: types.BaseChannel):
        """Builds the step.

        Args:
          prepared_data: `DataPrep.outputs["prepared_data"]`.
        """
        super().__init__(
            spec=ExampleGenSpec(
                prepared_data=prepared_data,
                examples=types.Channel(type=standard_artifacts.Examples),
            )
        )
