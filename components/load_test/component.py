"""LoadTest component: TFX's InfraValidator role, run with the server production runs."""

from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter

from components import ui_artifacts
from components.load_test import executor
from components.load_test.settings import LoadTestSettings


class LoadTestSpec(ComponentSpec):
    """Inputs, parameters and outputs of LoadTest (outputs as TFX's InfraValidatorSpec, plus
    the two the KFP UI renders)."""

    PARAMETERS = {
        executor.MODEL_NAME_KEY: ExecutionParameter(type=str),
        executor.EXAMPLE_SPLIT_KEY: ExecutionParameter(type=str),
        executor.SAMPLE_SIZE_KEY: ExecutionParameter(type=int),
        executor.MAX_P99_MS_KEY: ExecutionParameter(type=float),
        executor.MAX_P99_MS_TF_SERVING_KEY: ExecutionParameter(type=float),
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
    """Serves the candidate on loopback and load-tests it over gRPC, as production will serve it.

    TFX's InfraValidator needs Docker or a `KFP_NAMESPACE` that KFP v2 pods lack; this step
    starts the model server as a child process in its own step: `tensorflow_model_server`
    (what production runs; the KFP image carries it) when it is on PATH, else this project's
    TF-Serving-compatible `python -m serving`. It replays the model's warm-up requests and
    Predict/Classify/Regress on a sample of eval examples, and blesses the model only if every
    request succeeds, the p99 latency is within that server's bound and the model loaded in
    time (`LoadTestSettings`). The verdict is TFX's `InfraBlessing` (`blessed` 1/0, plus
    `server`, `requests`, `failures`, `p50_ms`, `p99_ms`, `load_time_s`, `reason`), which
    AtomicPusher takes as `infra_blessing`, as TFX's Pusher does; `metrics` and `report` show
    it in the KFP UI. "Not blessed" is an outcome: the step succeeds and the Pusher pushes
    nothing.
    """

    SPEC_CLASS = LoadTestSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(
        self,
        model: types.BaseChannel,
        examples: types.BaseChannel,
        *,
        model_name: str,
        settings: LoadTestSettings,
        model_blessing: types.BaseChannel | None = None,
        example_split: str = "eval",
    ):
        """Builds the load test.

        Args:
          model: The Trainer's model.
          examples: Examples whose `example_split` is sampled.
          model_name: Name the model is served as (the served model's name).
          settings: Sample size, bounds, concurrency, timeouts (validated when built).
          model_blessing: The Evaluator's blessing: an unblessed model is not load-tested
            (and not blessed), since it will not be pushed anyway.
          example_split: Split of `examples` to sample.

        Raises:
          ValueError: If `example_split` is empty.
        """
        if not example_split:
            raise ValueError("LoadTest needs a non-empty example_split (e.g. 'eval')")
        super().__init__(
            spec=LoadTestSpec(
                model=model,
                examples=examples,
                model_blessing=model_blessing,
                model_name=model_name,
                example_split=example_split,
                sample_size=settings.sample_size,
                max_p99_ms=settings.max_p99_ms,
                max_p99_ms_tf_serving=settings.max_p99_ms_tf_serving,
                load_timeout_s=settings.load_timeout_s,
                concurrency=settings.concurrency,
                request_timeout_s=settings.request_timeout_s,
                input_validation=settings.input_validation,
                blessing=types.Channel(type=standard_artifacts.InfraBlessing),
                metrics=types.Channel(type=ui_artifacts.Metrics),
                report=types.Channel(type=ui_artifacts.Markdown),
            )
        )
