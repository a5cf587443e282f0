"""LoadTest component: TFX's InfraValidator role, run with this project's own model server."""

from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter

from components import ui_artifacts
from components.load_test import executor


class LoadTestSpec(ComponentSpec):
    """Inputs, parameters and outputs of LoadTest (outputs as TFX's InfraValidatorSpec, plus
    the two the KFP UI renders)."""

    PARAMETERS = {
        executor.MODEL_NAME_KEY: ExecutionParameter(type=str),
        executor.EXAMPLE_SPLIT_KEY: ExecutionParameter(type=str),
        executor.SAMPLE_SIZE_KEY: ExecutionParameter(type=int),
        executor.MAX_P99_MS_KEY: ExecutionParameter(type=float),
        executor.LOAD_TIMEOUT_S_KEY: ExecutionParameter(type=float),
        executor.CONCURRENCY_KEY: ExecutionParameter(type=int),
        executor.REQUEST_TIMEOUT_S_KEY: ExecutionParameter(type=float),
        executor.INPUT_VALIDATION_KEY: ExecutionParameter(type=str),
    }
    INPUTS = {
        executor.MODEL_KEY: ChannelParameter(type=standard_artifacts.Model),
        executor.EXAMPLES_KEY: ChannelParameter(type=standard_artifacts.Examples),
        executor.MODEL_BLESSING_KEY: ChannelParameter(
            type=standard_artifacts.ModelBlessing, optional=True
        ),
    }
    OUTPUTS = {
        executor.BLESSING_KEY: ChannelParameter(type=standard_artifacts.InfraBlessing),
        executor.METRICS_KEY: ChannelParameter(type=ui_artifacts.Metrics),
        executor.REPORT_KEY: ChannelParameter(type=ui_artifacts.Markdown),
    }


class LoadTest(base_component.BaseComponent):
    """Serves the candidate with `python -m serving` on loopback and load-tests it over gRPC.

    TFX's InfraValidator needs Docker or a `KFP_NAMESPACE` that KFP v2 pods lack; this step
    starts the project's TF-Serving-compatible server as a child process in its own step (the
    same image on KFP), replays the model's warm-up requests and Predict/Classify/Regress on a
    sample of eval examples, and blesses the model only if every request succeeds, the p99
    latency is within `max_p99_ms` and the model loaded within `load_timeout_s`. The verdict is
    TFX's `InfraBlessing` (`blessed` 1/0, plus `requests`, `failures`, `p50_ms`, `p99_ms`,
    `load_time_s`, `reason`), which AtomicPusher takes as `infra_blessing`, as TFX's Pusher
    does; `metrics` and `report` show it in the KFP UI. "Not blessed" is an outcome: the step
    succeeds and the Pusher pushes nothing.
    """

    SPEC_CLASS = LoadTestSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(
        self,
        model: types.BaseChannel,
        examples: types.BaseChannel,
        *,
        model_name: str,
        model_blessing: types.BaseChannel | None = None,
        example_split: str = "eval",
        sample_size: int = 100,
        max_p99_ms: float = 1000.0,
        load_timeout_s: float = 120.0,
        concurrency: int = 2,
        request_timeout_s: float = 10.0,
        input_validation: str = "off",
    ):
        """Builds the load test.

        Args:
          model: The Trainer's model.
          examples: Examples whose `example_split` is sampled.
          model_name: Name the model is served as (the served model's name).
          model_blessing: The Evaluator's blessing: an unblessed model is not load-tested
            (and not blessed), since it will not be pushed anyway.
          example_split: Split of `examples` to sample.
          sample_size: Eval examples sent (the first ones of the split); each is one Predict
            and one Classify/Regress per such signature.
          max_p99_ms: Bound on the p99 round-trip latency, in milliseconds.
          load_timeout_s: Bound on server start to the version AVAILABLE, in seconds.
          concurrency: Requests in flight at once.
          request_timeout_s: Deadline of each request, in seconds.
          input_validation: The server's request validation: `off` (as the production
            `tensorflow/serving`, which validates nothing), `log` or `enforce` (reject examples
            outside the curated schema).

        Raises:
          ValueError: If a number is out of range, saying which.
        """
        values = {
            "sample_size": sample_size,
            "concurrency": concurrency,
            "max_p99_ms": max_p99_ms,
            "load_timeout_s": load_timeout_s,
            "request_timeout_s": request_timeout_s,
        }
        # Counts must be >= 1, times and bounds > 0.
        bad = {name: value for name, value in values.items() if not value > 0}
        if input_validation not in executor.INPUT_VALIDATION_MODES:
            raise ValueError(
                f"LoadTest input_validation must be one of {executor.INPUT_VALIDATION_MODES}, "
                f"got {input_validation!r}"
            )
        if bad or not example_split:
            raise ValueError(
                "LoadTest needs sample_size and concurrency >= 1, positive max_p99_ms, "
                "load_timeout_s and request_timeout_s, and a non-empty example_split; got "
                f"{bad or {'example_split': example_split}}"
            )
        super().__init__(
            spec=LoadTestSpec(
                model=model,
                examples=examples,
                model_blessing=model_blessing,
                model_name=model_name,
                example_split=example_split,
                sample_size=sample_size,
                max_p99_ms=float(max_p99_ms),
                load_timeout_s=float(load_timeout_s),
                concurrency=concurrency,
                request_timeout_s=float(request_timeout_s),
                input_validation=input_validation,
                blessing=types.Channel(type=standard_artifacts.InfraBlessing),
                metrics=types.Channel(type=ui_artifacts.Metrics),
                report=types.Channel(type=ui_artifacts.Markdown),
            )
        )
