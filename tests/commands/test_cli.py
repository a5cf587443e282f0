"""`taxi`: one command, its subcommands, and the programs it hands `serve` and `predict` to."""

import argparse

from commands import cli


def test_the_one_command_has_every_subcommand() -> None:
    [sub] = [a for a in cli.build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    assert set(sub.choices) == {
        "run",
        "compile",
        "check",
        "submit",
        "serve",
        "predict",
        "lineage",
        "monitor",
        "rollback",
        "schema-diff",
    }


def test_overrides_are_set_flags_on_every_configured_subcommand() -> None:
    parser = cli.build_parser()
    for command in ("run", "compile", "lineage", "monitor", "rollback"):
        args = parser.parse_args([command, "--set", "a.b=1", "--set", "c=2"])
        assert args.set == ["a.b=1", "c=2"], command


def test_serve_hands_tf_serving_flags_to_the_server(capsys) -> None:
    # serving/cli.py parses them: an unknown flag is its usage error, a bad value its config
    # error (exit 2 either way, before TensorFlow is loaded).
    code = cli.main(["serve", "--model_base_path=/tmp/m", "--num_versions=0", "--log_format=text"])
    assert code == 2
    assert "models.0.version_policy.num_versions" in capsys.readouterr().err


def test_predict_defaults_to_the_predict_method(tmp_path, capsys) -> None:
    missing = tmp_path / "rows.csv"
    code = cli.main(["predict", "--target=127.0.0.1:1", "--csv", str(missing)])
    assert code == 2  # serving/client_cli.py's code for bad input
    assert str(missing) in capsys.readouterr().err
