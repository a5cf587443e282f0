"""The `monitor` command's typed config (light: no TensorFlow, so config errors answer at once)."""

from typing import Annotated

import pydantic.dataclasses
from pydantic import Field

from typed_config import CONFIG, Settings, check_field


@pydantic.dataclasses.dataclass(frozen=True, config=CONFIG)
class MonitorConfig(Settings):
    """One monitor run.

    Attributes:
      logs: The request log folder (all `*.tfrecord` in it) or a glob of its files.
      output_dir: Where the report, summary, statistics and metrics go; the previous run's
        statistics there are the drift baseline.
      schema_path: The curated schema (thresholds, SERVING environment).
      baseline_statistics: Training statistics (`FeatureStats.pb`) of the served model; None =
        find them through ML-Metadata (`metadata` and `model_dir`).
      metadata: ML-Metadata: a SQLite file path, or `host:port` of a metadata-grpc-service.
      model_dir: The serving model directory (`<serving_base>/<model_name>`).
      window_hours: Only files modified in the last so many hours (None = all).
      now: Unix time the window and ages are measured from (None = now).
      max_training_age_days: Warn when the served model's newest training row is older.
      training_end_time: Unix time of the newest training row, when not read from lineage.
      pushgateway_url: Push the gauges there too (None = only the textfile).
      job: The Pushgateway job name.
    """

    logs: Annotated[str, Field(min_length=1)]
    output_dir: Annotated[str, Field(min_length=1)]
    schema_path: Annotated[str, Field(min_length=1)]
    baseline_statistics: str | None = None
    metadata: str | None = None
    model_dir: str | None = None
    window_hours: Annotated[float, Field(gt=0)] | None = None
    now: float | None = None
    max_training_age_days: Annotated[float, Field(gt=0)] | None = None
    training_end_time: float | None = None
    pushgateway_url: str | None = None
    job: str = "taxi-serving-monitor"

    @pydantic.model_validator(mode="after")
    def _check_baseline(self) -> "MonitorConfig":
        check_field(
            bool(self.baseline_statistics) or bool(self.metadata and self.model_dir),
            "baseline_statistics",
            "a statistics file, or metadata and model_dir to find the served model's",
            self.baseline_statistics,
        )
        return self
