"""Server settings: flags to validated settings, errors naming the settings field."""

from __future__ import annotations

import argparse
import dataclasses

import pydantic
import pytest

import typed_config
from serving import cli
from serving.settings import (
    ALL,
    SPECIFIC,
    BatchingSettings,
    ModelSettings,
    RequestLogSettings,
    ServerSettings,
    VersionPolicy,
    parse_model_config,
)


def _settings(*flags: str) -> ServerSettings:
    return cli.settings_from_args(cli._parser().parse_args(list(flags)))


def test_flags_build_the_settings() -> None:
    settings = _settings(
        "--model_base_path=/models/taxi",
        "--versions=3,1",
        "--enable_batching",
        "--batch_timeout_micros=500",
        "--rest_api_port=-1",
        "--ssl_cert=server.pem",
        "--ssl_key=server.key",
    )
    (model,) = settings.models
    assert (model.name, model.base_path) == ("chicago_taxi", "/models/taxi")
    assert model.version_policy == VersionPolicy(SPECIFIC, versions=(3, 1))
    assert settings.batching == BatchingSettings(1000, 0.0005)
    assert settings.rest_port is None
    assert settings.tls is not None and settings.tls.client_ca_file is None
    assert _settings("--model_base_path=/m").models[0].version_policy.num_versions == 1


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (
            ["--num_versions=0"],
            "Invalid config value for 'models.0.version_policy.num_versions': expected >= 1, got 0",
        ),
        (["--versions=1,x"], "'models.0.version_policy.versions.1'"),
        (["--max_request_bytes=0"], "'max_request_bytes': expected > 0, got 0"),
        (["--file_system_poll_wait_seconds=0"], "'file_system_poll_s': expected > 0"),
        (["--port=70000"], "'grpc_port': expected <= 65535, got 70000"),
        (["--enable_batching", "--max_batch_size=0"], "'batching.max_batch_size'"),
        (["--grpc_max_threads=0"], "'grpc_max_workers'"),
        (["--ssl_cert=a.pem"], "--ssl_cert and --ssl_key go together"),
        (["--model_name="], "'models.0.name'"),
        (
            ["--grpc_max_threads=8", "--grpc_max_concurrent_rpcs=8"],
            "'grpc_max_concurrent_rpcs': expected fewer than grpc_max_workers (8)",
        ),
        (["--max_request_elements=0"], "'max_request_elements'"),
        (["--max_examples_per_request=0"], "'max_examples_per_request'"),
        (["--max_num_load_retries=-1"], "'max_num_load_retries'"),
    ],
)
def test_bad_flags_fail_naming_the_field(flags: list[str], message: str) -> None:
    with pytest.raises(typed_config.ConfigError) as error:
        _settings("--model_base_path=/m", *flags)
    assert message in str(error.value)


def test_hardening_defaults_are_safe() -> None:
    settings = _settings("--model_base_path=/m")
    assert settings.host == "127.0.0.1"  # loopback unless --host=0.0.0.0 is passed
    assert settings.concurrent_rpc_limit < settings.grpc_max_workers
    assert (settings.max_num_load_retries, settings.load_retry_interval_s) == (5, 60.0)
    flags = ("--model_base_path=/m", "--grpc_max_threads=8", "--load_retry_interval_micros=5000")
    assert _settings(*flags).concurrent_rpc_limit == 6
    assert _settings(*flags).load_retry_interval_s == 0.005


def test_a_model_source_is_required() -> None:
    with pytest.raises(typed_config.ConfigError, match="--model_base_path or --model_config_file"):
        _settings()
    with pytest.raises(pydantic.ValidationError, match="at least one model"):
        ServerSettings()


def test_settings_validate_however_built() -> None:
    model = ModelSettings("m", "/m")  # positional, as TF Serving's config entries read
    settings = ServerSettings(models=(model,))
    with pytest.raises(pydantic.ValidationError, match="unique model names"):
        ServerSettings(models=(model, model))
    with pytest.raises(pydantic.ValidationError, match="input_validation"):
        ServerSettings(models=(model,), input_validation="strict")  # type: ignore[arg-type]
    with pytest.raises(pydantic.ValidationError, match="bogus"):
        ServerSettings(models=(model,), bogus=1)  # type: ignore[call-arg]
    with pytest.raises(pydantic.ValidationError, match="drain_timeout_s"):
        dataclasses.replace(settings, drain_timeout_s=-1)
    with pytest.raises(pydantic.ValidationError, match="at least one version"):
        VersionPolicy(SPECIFIC)
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.grpc_port = 1  # type: ignore[misc]


def test_model_config_file_parses_into_the_same_settings() -> None:
    (model,) = parse_model_config(
        'model_config_list { config { name: "a" base_path: "/a" '
        "model_version_policy { all {} } version_labels { key: 'stable' value: 2 } } }"
    )
    assert model == ModelSettings("a", "/a", VersionPolicy(ALL), (("stable", 2),))
    assert model.labels == {"stable": 2}
    assert VersionPolicy(ALL).select([3, 1, 2]) == [1, 2, 3]
    with pytest.raises(ValueError, match="Duplicate model names"):
        parse_model_config(
            'model_config_list { config { name: "a" base_path: "/a" } '
            'config { name: "a" base_path: "/b" } }'
        )


def test_flag_defaults_are_the_settings_defaults() -> None:
    # Every default is written once, in the settings classes: a flag left out passes nothing.
    settings = _settings("--model_base_path=/m", "--request_log_dir=/logs", "--enable_batching")
    expected = ServerSettings(
        models=settings.models,
        schema_path=settings.schema_path,
        batching=BatchingSettings(),
        request_log=RequestLogSettings(directory="/logs"),
    )
    assert settings == expected
    own = {
        action.dest: action.default
        for action in cli._parser()._actions
        if action.default not in (None, False, "", argparse.SUPPRESS)
    }
    # Only what no settings class defines: flag mode's model name and the logging setup.
    assert own == {"model_name": "chicago_taxi", "log_level": "INFO", "log_format": "json"}


def test_grpc_server_options_bound_what_one_connection_holds() -> None:
    from serving.server import grpc_server_options

    options = dict(grpc_server_options(ServerSettings(models=(ModelSettings("m", "/m"),))))
    assert (
        options["grpc.max_concurrent_streams"]
        == 16
        < ServerSettings(models=(ModelSettings("m", "/m"),)).concurrent_rpc_limit
    )
    assert options["grpc.max_connection_age_ms"] == 120_000
    assert options["grpc.max_connection_age_grace_ms"] == 30_000
