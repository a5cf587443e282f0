"""`make rollback` (`python -m commands.cli rollback`) on a real model directory."""

from commands import cli


def _version(path) -> None:
    (path / "variables").mkdir(parents=True)
    (path / "saved_model.pb").write_bytes(b"model")


def test_rollback_withdraws_the_latest_and_says_what_is_served(tmp_path, capsys) -> None:
    base = tmp_path / "m"
    for version in ("100", "200", "300"):
        _version(base / version)
    assert cli.main(["rollback", "--model-dir", str(base)]) == 0
    assert "Withdrew versions [300]" in capsys.readouterr().out
    assert sorted(p.name for p in base.iterdir()) == ["100", "200", "_rolled_back_300"]
    assert cli.main(["rollback", "--model-dir", str(base), "--to", "100"]) == 0
    assert "TF Serving now serves version 100." in capsys.readouterr().out
    assert cli.main(["rollback", "--model-dir", str(base)]) == cli.EXIT_RUN_FAILED
    assert "rolling back needs an earlier version" in capsys.readouterr().err
    assert sorted(p.name for p in base.iterdir()) == ["100", "_rolled_back_200", "_rolled_back_300"]
