"""The plain container tasks' STRING outputs: written verbatim where KFP's launcher reads them."""

import pytest

from components.data_prep.source import fingerprint_source
from runners.kubeflow.pod import fingerprint


def test_fingerprint_task_writes_the_sources_fingerprint_without_a_newline(tmp_path) -> None:
    source = tmp_path / "data"
    source.mkdir()
    (source / "a.csv").write_text("fare,company\n1.5,Flash Cab\n")
    output = tmp_path / "outputs" / "fingerprint"  # the launcher's folder may not exist yet

    assert fingerprint.main(["--source-uri", str(source), "--output", str(output)]) == 0

    written = output.read_text()
    assert written == fingerprint_source(str(source)) and len(written) == 64
    (source / "a.csv").write_text("fare,company\n1.5,Flash Cab\n2.0,Flash Cab\n")
    assert fingerprint.main(["--source-uri", str(source), "--output", str(output)]) == 0
    assert output.read_text() != written  # new data, new cache key


def test_fingerprint_task_fails_naming_a_missing_source(tmp_path, capsys) -> None:
    missing = tmp_path / "nowhere"
    output = tmp_path / "fingerprint"
    assert fingerprint.main(["--source-uri", str(missing), "--output", str(output)]) == 1
    assert str(missing) in capsys.readouterr().err
    assert not output.exists()


@pytest.mark.parametrize("argv", [[], ["--source-uri", "x"]])
def test_fingerprint_task_requires_both_flags(argv: list[str]) -> None:
    with pytest.raises(SystemExit):
        fingerprint.main(argv)
