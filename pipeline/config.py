"""Typed, validated configuration: shared pipeline settings and the `local` environment.

Built once at the entry point (CLI) from defaults, an optional JSON file and `key=value`
overrides; a bad value fails at start with a message naming the field.
"""

import dataclasses
import json
import os
import types
import typing
from collections.abc import Mapping
from typing import Any

from components.anomalies_gate.executor import POLICIES as ANOMALIES_POLICIES
from components.trainer.hyperparameters import Hyperparameters


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the field.

    Attributes:
      field: Dotted path of the offending field, when one field is at fault.
      detail: What was expected and what was received.
    """

    def __init__(self, message: str, field: str | None = None, detail: str | None = None):
        super().__init__(message)
        self.field = field
        self.detail = detail

    @classmethod
    def for_field(cls, field: str, detail: str) -> "ConfigError":
        """Builds the error for one field: `Invalid config value for 'a.b': <detail>`."""
        return cls(f"Invalid config value for {field!r}: {detail}", field, detail)


@dataclasses.dataclass(frozen=True)
class EvaluationSettings:
    """What blesses a model (TFMA), with the business context of the taxi data.

    Cash tips are not recorded, so most cash trips look like non-tippers and inflate overall
    accuracy; the thresholds therefore hold on the Credit Card slice as well as overall.

    Attributes:
      operating_threshold: Score above which a trip is predicted "big tipper" (precision and
        recall are reported at this threshold).
      min_auc: Lower bound on overall AUC.
      min_auc_credit_card: Lower bound on AUC in the payment_type=Credit Card slice (the
        default model reaches 0.62-0.64 on the embedded data; 0.55 keeps a margin above chance
        without making `make run` depend on run-to-run noise).
      max_auc_drop: Largest allowed AUC decrease against the pushed baseline (overall and
        Credit Card); 0 means "no worse than the baseline".
      slice_features: Raw features the metrics are sliced by.
    """

    operating_threshold: float = 0.5
    min_auc: float = 0.7
    min_auc_credit_card: float = 0.55
    max_auc_drop: float = 0.01
    slice_features: tuple[str, ...] = ("payment_type", "company", "trip_start_hour")

    def __post_init__(self) -> None:
        """Validates ranges."""
        for name in ("operating_threshold", "min_auc", "min_auc_credit_card"):
            check_field(0.0 <= getattr(self, name) <= 1.0, name, "in [0, 1]", getattr(self, name))
        check_field(0.0 <= self.max_auc_drop <= 1.0, "max_auc_drop", "in [0, 1]", self.max_auc_drop)
        check_field(bool(self.slice_features), "slice_features", "non-empty", self.slice_features)


@dataclasses.dataclass(frozen=True)
class PipelineSettings:
    """What the pipeline does, whatever runs it.

    Attributes:
      pipeline_name: TFX pipeline name (MLMD context, KFP pipeline name).
      model_name: Served model name: versions go to `<serving_base>/<model_name>/<version>`.
      train_steps: Trainer training steps.
      eval_steps: Trainer validation steps over the whole run (spread over the epochs).
      eval_fraction: Share of the newest rows (by trip_start_timestamp) held out for eval.
      max_rows: Use an evenly spaced subset of this many rows (tests, quick runs); None = all.
      anomalies_policy: `fail` stops the run on data anomalies; `warn` only reports them.
      hyperparameters: Model and training settings.
      evaluation: Blessing thresholds and slices.
    """

    pipeline_name: str = "chicago-taxi"
    model_name: str = "chicago_taxi"
    train_steps: int = 1000
    eval_steps: int = 150
    eval_fraction: float = 0.2
    max_rows: int | None = None
    anomalies_policy: str = "fail"
    hyperparameters: Hyperparameters = dataclasses.field(default_factory=Hyperparameters)
    evaluation: EvaluationSettings = dataclasses.field(default_factory=EvaluationSettings)

    def __post_init__(self) -> None:
        """Validates values."""
        for name in ("pipeline_name", "model_name"):
            value = getattr(self, name)
            check_field(
                bool(value) and all(c.isalnum() or c in "-_" for c in value),
                name,
                "non-empty letters, digits, '-' or '_'",
                value,
            )
        check_field(self.train_steps >= 1, "train_steps", ">= 1", self.train_steps)
        check_field(self.eval_steps >= 1, "eval_steps", ">= 1", self.eval_steps)
        check_field(
            0.0 < self.eval_fraction < 1.0, "eval_fraction", "in (0, 1)", self.eval_fraction
        )
        check_field(
            self.max_rows is None or self.max_rows >= 20, "max_rows", ">= 20 or null", self.max_rows
        )
        check_field(
            self.anomalies_policy in ANOMALIES_POLICIES,
            "anomalies_policy",
            f"one of {ANOMALIES_POLICIES}",
            self.anomalies_policy,
        )


@dataclasses.dataclass(frozen=True)
class LocalConfig:
    """The `local` environment: BeamDagRunner on this machine.

    Attributes:
      settings: What the pipeline does.
      source_data: Directory (or file) of CSVs with the taxi columns; None = the sample
        shipped in the installed tfx wheel.
      output_dir: Everything the run writes: prepared data, pipeline root, MLMD, serving base.
      serving_base: Where the Pusher writes `<model_name>/<version>`; None = output_dir/serving.
      enable_cache: Reuse results of unchanged steps from earlier runs.
      beam_running_mode: Beam DirectRunner mode for the components (`in_memory` is fastest
        on a small machine; `multi_processing` uses every core).
      serve_after_run: After a push, serve the model briefly and answer one gRPC prediction.
    """

    settings: PipelineSettings = dataclasses.field(default_factory=PipelineSettings)
    source_data: str | None = None
    output_dir: str = "out/local"
    serving_base: str | None = None
    enable_cache: bool = True
    beam_running_mode: str = "in_memory"
    serve_after_run: bool = True

    def __post_init__(self) -> None:
        """Validates values."""
        check_field(bool(self.output_dir), "output_dir", "non-empty", self.output_dir)
        check_field(
            self.beam_running_mode in ("in_memory", "multi_processing", "multi_threading"),
            "beam_running_mode",
            "in_memory, multi_threading or multi_processing",
            self.beam_running_mode,
        )
        if self.source_data is not None:
            check_field(
                os.path.exists(self.source_data),
                "source_data",
                "an existing path",
                self.source_data,
            )

    @property
    def pipeline_root(self) -> str:
        """Root of the TFX artifacts."""
        return os.path.join(self.output_dir, "pipeline_root")

    @property
    def metadata_path(self) -> str:
        """SQLite ML-Metadata store."""
        return os.path.join(self.output_dir, "metadata.sqlite")

    @property
    def prepared_data_dir(self) -> str:
        """Where time-split, versioned copies of the source data are written."""
        return os.path.join(self.output_dir, "data")

    @property
    def model_dir(self) -> str:
        """`<serving_base>/<model_name>`: the TF Serving model base path."""
        base = self.serving_base or os.path.join(self.output_dir, "serving")
        return os.path.join(base, self.settings.model_name)

    @property
    def beam_pipeline_args(self) -> list[str]:
        """Beam arguments for the components' own Beam jobs."""
        return direct_runner_args(self.beam_running_mode)


def direct_runner_args(mode: str) -> list[str]:
    """Beam arguments selecting a DirectRunner mode for the components' Beam jobs.

    `in_memory` is the DirectRunner's default, so it gets no arguments, and none is better:
    given any Beam arguments, every Beam component first builds and stages an sdist of TFX
    itself for remote workers (about 2 s each here), useless for an in-process runner.

    Args:
      mode: `in_memory`, `multi_threading` or `multi_processing`.

    Returns:
      The arguments.
    """
    if mode == "in_memory":
        return []
    return [f"--direct_running_mode={mode}", "--direct_num_workers=0"]


def check_field(ok: bool, field: str, expected: str, got: Any) -> None:
    """Raises ConfigError naming `field` unless `ok`."""
    if not ok:
        raise ConfigError.for_field(field, f"expected {expected}, got {got!r}")


def _coerce(field: str, annotation: Any, value: Any) -> Any:
    """Converts a JSON or command-line value to the field's declared type."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        is_null = value is None or (isinstance(value, str) and value.lower() in ("none", "null"))
        if is_null and type(None) in args:
            return None
        non_none = [a for a in args if a is not type(None)]
        return _coerce(field, non_none[0], value)
    try:
        if origin is tuple:
            items = (
                value
                if isinstance(value, list | tuple)
                else [v for v in str(value).split(",") if v]
            )
            return tuple(_coerce(field, args[0], v) for v in items)
        if annotation is bool:
            if isinstance(value, bool):
                return value
            if str(value).lower() in ("1", "true", "yes", "on"):
                return True
            if str(value).lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(value)
        if annotation is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError(value)
            return int(value)
        if annotation is float:
            return float(value)
        if annotation is str:
            return str(value)
    except (TypeError, ValueError) as e:
        raise ConfigError.for_field(field, f"expected {annotation}, got {value!r}") from e
    raise ConfigError(f"Config field {field!r} has an unsupported type {annotation}")


def build(cls: type, values: Mapping[str, Any], prefix: str = "") -> Any:
    """Builds a config dataclass from a nested mapping, coercing and validating each field.

    Args:
      cls: The dataclass to build (e.g. LocalConfig).
      values: Nested mapping of field values; unknown keys are errors.
      prefix: Dotted path of `cls` in the whole config (for messages).

    Returns:
      The validated instance.

    Raises:
      ConfigError: For an unknown field or an invalid value, naming the field.
    """
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ConfigError(
            f"Unknown config field(s) {[prefix + u for u in unknown]}; known: "
            f"{sorted(prefix + f for f in fields)}"
        )
    kwargs = {}
    for name, value in values.items():
        annotation = hints[name]
        if dataclasses.is_dataclass(annotation):
            if not isinstance(value, Mapping):
                raise ConfigError(
                    f"Config field {prefix + name!r} must be a mapping, got {value!r}"
                )
            kwargs[name] = build(typing.cast(type, annotation), value, f"{prefix}{name}.")
        else:
            kwargs[name] = _coerce(prefix + name, annotation, value)
    try:
        return cls(**kwargs)
    except ConfigError as e:
        if e.field is None or e.detail is None:
            raise
        raise ConfigError.for_field(prefix + e.field, e.detail) from e
    except ValueError as e:
        # Nested validators (e.g. Hyperparameters) raise ValueError naming their own field.
        raise ConfigError(f"Invalid config in {prefix or cls.__name__}: {e}") from e


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """Turns `a.b=value` strings into a nested mapping.

    Args:
      pairs: Overrides such as `settings.train_steps=200`.

    Returns:
      Nested mapping.

    Raises:
      ConfigError: If a pair has no `=`.
    """
    result: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise ConfigError(f"Override {pair!r} must look like field.path=value")
        key, value = pair.split("=", 1)
        node = result
        *parents, leaf = key.strip().split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return result


def merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """Deep-merges `extra` into a copy of `base`."""
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(dict(out[key]), value)
        else:
            out[key] = value
    return out


def load(cls: type, config_file: str | None = None, overrides: list[str] | None = None) -> Any:
    """Builds an environment config from an optional JSON file plus `key=value` overrides.

    Args:
      cls: The environment's config dataclass (LocalConfig, KubeflowConfig).
      config_file: JSON file with the config's fields (nested objects for nested configs).
      overrides: `field.path=value` strings applied last.

    Returns:
      The validated config.

    Raises:
      ConfigError: On an unreadable file, an unknown field or an invalid value, naming it.
    """
    values: Any = {}
    if config_file:
        try:
            with open(config_file) as f:
                values = json.load(f)
        except (OSError, ValueError) as e:
            raise ConfigError(f"Cannot read config file {config_file!r}: {e}") from e
        if not isinstance(values, Mapping):
            raise ConfigError(
                f"Config file {config_file!r} must hold a JSON object, got {values!r}"
            )
    return build(cls, merge(dict(values), parse_overrides(overrides or [])))


def load_local_config(
    config_file: str | None = None, overrides: list[str] | None = None
) -> LocalConfig:
    """Builds the `local` config (see `load`)."""
    return typing.cast(LocalConfig, load(LocalConfig, config_file, overrides))
