"""LoadTest's settings: each default and bound written once, here, next to the component."""

from typing import Annotated, Literal

import pydantic.dataclasses
from pydantic import Field

from typed_config import CONFIG, Settings

# The production server (the KFP image carries it, see kubeflow/pipeline/Dockerfile) and the
# project's own TF-Serving-compatible server, which LoadTest starts where the binary is absent.
TF_SERVING = "tensorflow_model_server"
PYTHON_SERVER = "python -m serving"


@pydantic.dataclasses.dataclass(frozen=True, config=CONFIG)
class LoadTestSettings(Settings):
    """The pre-push load test (`LoadTest` step): what makes a model servable.

    The step serves the candidate with `tensorflow_model_server` when that binary is on PATH
    (the KFP image), else with this project's `python -m serving`; its report names which, and
    the p99 bound is that server's.

    Attributes:
      enabled: Run the LoadTest step and make the Pusher require its blessing; false drops
        the step (the Pusher then needs the Evaluator's blessing only).
      sample_size: Eval examples sent, each as one Predict and one Classify and Regress (the
        model's warm-up requests are sent as well).
      max_p99_ms: Bound on the p99 gRPC round trip in milliseconds when the Python server is
        measured. The default suits it on a small shared machine (p99 2.6-5 ms measured idle).
      max_p99_ms_tf_serving: The same bound when `tensorflow_model_server` is measured (what
        production runs): set it from the serving SLO. The default leaves room for a busy node
        over the C++ server's few milliseconds on a model of this size.
      load_timeout_s: Bound on server start to the model AVAILABLE (process start-up, model
        load and warm-up), in seconds.
      concurrency: Requests in flight at once.
      request_timeout_s: Deadline of each request, in seconds.
      input_validation: The Python server's request validation: `off` serves as the
        production `tensorflow_model_server` does (no schema checks; the eval data already
        passed the AnomaliesGate); `enforce` also rejects examples outside the curated schema.
        `tensorflow_model_server` validates nothing.
    """

    enabled: bool = True
    sample_size: Annotated[int, Field(ge=1, le=10_000)] = 100
    max_p99_ms: Annotated[float, Field(gt=0)] = 1000.0
    max_p99_ms_tf_serving: Annotated[float, Field(gt=0)] = 250.0
    load_timeout_s: Annotated[float, Field(gt=0, le=3600)] = 120.0
    concurrency: Annotated[int, Field(ge=1, le=64)] = 2
    request_timeout_s: Annotated[float, Field(gt=0, le=600)] = 10.0
    input_validation: Literal["off", "log", "enforce"] = "off"

    def max_p99_ms_for(self, server: str) -> float:
        """The p99 bound of the server measured (`TF_SERVING` or `PYTHON_SERVER`)."""
        return self.max_p99_ms_tf_serving if server == TF_SERVING else self.max_p99_ms
