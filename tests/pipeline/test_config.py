"""Config building, overrides and validation messages."""

import json

import pytest

from pipeline import cli
from pipeline import config as config_lib


def test_defaults_are_valid_and_derive_paths() -> None:
    config = config_lib.load_local_config()
    assert config.settings.train_steps == 1000
    assert config.model_dir.endswith("serving/chicago_taxi")
    assert config.beam_pipeline_args == []  # in_memory is Beam's default; see the property
    other = config_lib.load_local_config(None, ["beam_running_mode=multi_processing"])
    assert "--direct_running_mode=multi_processing" in other.beam_pipeline_args


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
            "'settings.anomalies_policy': expected one of ('fail', 'warn')",
        ),
        ("settings.evaluation.min_auc=1.5", "'settings.evaluation.min_auc'"),
        ("settings.model_name=bad/name", "'settings.model_name'"),
        ("settings.hyperparameters.learning_rate=5", "learning_rate must be in (0, 1)"),
        ("settings.no_such_field=1", "Unknown config field(s) ['settings.no_such_field']"),
        ("beam_running_mode=spark", "'beam_running_mode'"),
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
