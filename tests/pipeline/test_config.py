"""Config building, overrides and validation messages."""

import dataclasses
import json

import pydantic
import pytest

from commands import cli
from components.anomalies_gate import policies
from model.trainer.hyperparameters import Hyperparameters
from pipeline import config as config_lib


def test_defaults_are_valid_and_derive_paths() -> None:
    config = config_lib.load_local_config()
    assert config.model_dir.endswith("serving/chicago_taxi")
    assert config.beam_pipeline_args() == []  # in_memory is Beam's default; see pipeline.beam
    other = config_lib.load_local_config(None, ["beam.mode=multi_processing"])
    assert "--direct_running_mode=multi_processing" in other.beam_pipeline_args()


def test_overrides_and_file_are_merged_and_coerced(tmp_path) -> None:
    path = tmp_path / "local.json"
    path.write_text(json.dumps({"settings": {"train_steps": 50, "evaluation": {"min_auc": 0.5}}}))
    config = config_lib.load_local_config(
        str(path),
        [
            "settings.eval_steps=7",
            "settings.hyperparameters.hidden_units=32,8",
            "enable_cache=false",
        ],
    )
    assert config.settings.train_steps == 50
    assert config.settings.eval_steps == 7
    assert config.settings.evaluation.min_auc == 0.5
    assert config.settings.hyperparameters.hidden_units == (32, 8)
    assert config.enable_cache is False


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("settings.train_steps=0", "'settings.train_steps'"),
        ("settings.train_steps=abc", "'settings.train_steps'"),
        (
            "settings.anomalies_policy=ignore",
            "'settings.anomalies_policy': expected 'fail' or 'warn', got 'ignore'",
        ),
        ("settings.evaluation.min_auc=1.5", "'settings.evaluation.min_auc'"),
        ("settings.model_name=bad/name", "'settings.model_name'"),
        (
            "settings.hyperparameters.learning_rate=5",
            "'settings.hyperparameters.learning_rate': expected < 1",
        ),
        ("settings.hyperparameters.hidden_units=8,0", "'settings.hyperparameters.hidden_units.1'"),
        ("settings.hyperparameters.hidden_units=", "'settings.hyperparameters.hidden_units'"),
        ("settings.max_rows=5", "'settings.max_rows': expected >= 20"),
        ("settings.load_test.max_p99_ms=0", "'settings.load_test.max_p99_ms': expected > 0"),
        ("settings.load_test.concurrency=0", "'settings.load_test.concurrency': expected >= 1"),
        ("settings.load_test.enabled=maybe", "'settings.load_test.enabled'"),
        ("enable_cache=maybe", "'enable_cache'"),
        ("settings=3", "'settings'"),
        (
            "settings.no_such_field=1",
            "Unknown config field(s) ['settings.no_such_field']; "
            "known: ['settings.anomalies_policy'",
        ),
        ("settings.train_steps", "must look like field.path=value"),
        ("beam.runner=dask", "'beam.runner'"),
        ("source_data=/does/not/exist", "'source_data': expected an existing path"),
    ],
)
def test_bad_values_fail_naming_the_field(override: str, message: str) -> None:
    with pytest.raises(config_lib.ConfigError) as error:
        config_lib.load_local_config(None, [override])
    assert message in str(error.value)


def test_cli_reports_config_errors_without_traceback(capsys) -> None:
    assert cli.main(["run", "--set", "settings.eval_steps=-1"]) == cli.EXIT_CONFIG_ERROR
    err = capsys.readouterr().err
    assert err.startswith("config error: Invalid config value for 'settings.eval_steps'")
    assert "Traceback" not in err


def test_text_conventions_null_and_comma_lists(tmp_path) -> None:
    config = config_lib.load_local_config(
        None,
        [
            f"source_data={tmp_path}",
            "serving_base=NULL",
            "settings.max_rows=none",
            "settings.evaluation.slice_features=company, payment_type",
        ],
    )
    assert config.source_data == str(tmp_path)
    assert config.serving_base is None and config.settings.max_rows is None
    assert config.settings.evaluation.slice_features == ("company", "payment_type")
    # A string field that is not optional keeps the word.
    assert config_lib.load_local_config(None, ["output_dir=none"]).output_dir == "none"


def test_every_bad_field_is_reported_at_once(tmp_path) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"settings": {"evaluation": {"min_aucc": 0.5}}, "output_dir": ""}))
    with pytest.raises(config_lib.ConfigError) as error:
        config_lib.load_local_config(str(path), ["settings.eval_steps=0"])
    message = str(error.value)
    assert message.startswith("Unknown config field(s) ['settings.evaluation.min_aucc']")
    assert "'settings.evaluation.min_auc'" in message.split("known:")[1]
    assert "Invalid config value for 'output_dir'" in message
    assert "Invalid config value for 'settings.eval_steps': expected >= 1, got '0'" in message
    assert error.value.field == "settings.eval_steps"  # the first invalid value, in field order


def test_unreadable_or_non_object_file_is_a_config_error(tmp_path) -> None:
    with pytest.raises(config_lib.ConfigError, match="Cannot read config file"):
        config_lib.load_local_config(str(tmp_path / "missing.json"))
    path = tmp_path / "list.json"
    path.write_text("[1, 2]")
    with pytest.raises(config_lib.ConfigError, match="must hold a JSON object"):
        config_lib.load_local_config(str(path))


def test_settings_are_frozen_and_validated_however_built() -> None:
    config = config_lib.load_local_config()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.output_dir = "elsewhere"  # type: ignore[misc]
    # Keyword construction, positional construction and dataclasses.replace all validate.
    with pytest.raises(pydantic.ValidationError, match="train_steps"):
        config_lib.PipelineSettings(train_steps=0)
    with pytest.raises(pydantic.ValidationError, match="no_such_field"):
        config_lib.EvaluationSettings(no_such_field=1)  # type: ignore[call-arg]
    with pytest.raises(pydantic.ValidationError, match="max_rows"):
        dataclasses.replace(config.settings, max_rows=1)
    assert config_lib.EvaluationSettings(0.4).operating_threshold == 0.4
    assert hash(config) == hash(config_lib.load_local_config())


def test_the_config_accepts_exactly_the_gate_policies() -> None:
    assert policies.POLICIES == ("fail", "warn")
    for policy in policies.POLICIES:
        assert config_lib.PipelineSettings(anomalies_policy=policy).anomalies_policy == policy
    with pytest.raises(pydantic.ValidationError):
        config_lib.PipelineSettings(anomalies_policy="ignore")  # type: ignore[arg-type]


def test_hyperparameters_survive_the_trainer_custom_config() -> None:
    hp = config_lib.load_local_config(
        None, ["settings.hyperparameters.hidden_units=16,4", "settings.hyperparameters.seed=3"]
    ).settings.hyperparameters
    custom_config = json.loads(json.dumps(hp.to_custom_config()))
    assert custom_config["hyperparameters"]["hidden_units"] == [16, 4]
    assert Hyperparameters.from_custom_config(custom_config) == hp
    assert Hyperparameters.from_custom_config(None) == Hyperparameters()


def test_keep_versions_reaches_the_pusher_and_refuses_less_than_two(tmp_path) -> None:
    from pipeline import pipeline as pipeline_lib

    with pytest.raises(config_lib.ConfigError, match=r"'settings\.keep_versions'"):
        config_lib.load_local_config(None, ["settings.keep_versions=1"])

    def pusher_config(settings: config_lib.PipelineSettings) -> dict:
        built = pipeline_lib.create_pipeline(
            settings,
            pipeline_root=str(tmp_path),
            source_uri=str(tmp_path / "src"),
            source_fingerprint="f",
            served_model="none",
            schema_path=str(tmp_path / "schema.pbtxt"),
            model_dir=str(tmp_path / "serving" / "m"),
        )
        pusher = next(c for c in built.components if c.id == "Pusher")
        return json.loads(pusher.exec_properties["custom_config"])

    kept = config_lib.load_local_config(None, ["settings.keep_versions=3"]).settings
    assert pusher_config(kept)["keep_versions"] == 3
    assert "keep_versions" not in pusher_config(config_lib.PipelineSettings())
