"""Every failure of a command a person types: one line naming the path and the problem."""

import csv
import os
import sqlite3

import pytest

import schemas
from commands import cli
from components.data_prep import source as source_lib
from operations import monitor
from serving import schema as serving_schema
from serving.examples import ExampleBuilder
from tests.operations.test_monitor import log_traffic


def _one_line_error(capsys: pytest.CaptureFixture[str], *expected: str) -> str:
    """The command's stderr: exactly one line, holding every expected text, no traceback."""
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for text in expected:
        assert text in lines[0], lines[0]
    return lines[0]


# lineage ---------------------------------------------------------------------------------------


def _lineage(tmp_path, metadata: str, model_dir: str | None = None) -> int:
    return cli.main(
        [
            "lineage",
            "--set",
            f"output_dir={tmp_path}",
            "--metadata",
            metadata,
            "--model-dir",
            model_dir or str(tmp_path / "models"),
        ]
    )


def test_lineage_on_a_garbage_store_names_the_file(tmp_path, capsys) -> None:
    store = tmp_path / "metadata.sqlite"
    store.write_bytes(os.urandom(4096))
    assert _lineage(tmp_path, str(store)) == cli.EXIT_RUN_FAILED
    _one_line_error(capsys, str(store), "is not an SQLite database")


def test_lineage_on_an_empty_store_says_no_run_is_recorded(tmp_path, capsys) -> None:
    store = tmp_path / "metadata.sqlite"
    store.write_bytes(b"")
    assert _lineage(tmp_path, str(store)) == cli.EXIT_RUN_FAILED
    _one_line_error(capsys, str(store), "is empty: no run recorded")


def test_lineage_on_an_sqlite_file_that_is_not_ml_metadata(tmp_path, capsys) -> None:
    store = tmp_path / "metadata.sqlite"
    with sqlite3.connect(store) as db:
        db.execute("CREATE TABLE notes (text TEXT)")
    assert _lineage(tmp_path, str(store)) == cli.EXIT_RUN_FAILED
    _one_line_error(capsys, str(store), "is not a readable ML-Metadata store")


def test_lineage_with_a_corrupt_push_manifest_names_it(tmp_path, capsys) -> None:
    from ml_metadata.metadata_store import metadata_store
    from ml_metadata.proto import metadata_store_pb2

    import model_contract

    store = tmp_path / "metadata.sqlite"
    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = str(store)
    metadata_store.MetadataStore(config)  # An empty, valid ML-Metadata store.
    version = tmp_path / "models" / "7"
    (version / "variables").mkdir(parents=True)
    (version / model_contract.SAVED_MODEL_FILE).write_bytes(b"model")
    manifest = version / model_contract.MANIFEST_FILE
    manifest.parent.mkdir(parents=True, exist_ok=True)
    manifest.write_text('{"model_uri": ')
    assert _lineage(tmp_path, str(store)) == cli.EXIT_RUN_FAILED
    _one_line_error(capsys, f"the push manifest in {version} cannot be read")


# schema-diff -----------------------------------------------------------------------------------


def _write(path, data: bytes) -> str:
    path.write_bytes(data)
    return str(path)


@pytest.mark.parametrize(
    ("make", "named", "expected"),
    [
        (lambda p: str(p / "missing.csv"), "missing.csv", "does not exist"),
        (lambda p: _write(p / "empty.csv", b""), "empty.csv", "the file is empty"),
        (
            lambda p: _write(p / "data.csv", b"\x00\x01\xffPK\x03\x04" * 100),
            "data.csv",
            "a binary file",
        ),
        (lambda p: _write(p / "notes.txt", b"a,b\n1,2\n") and str(p), "", "No .csv files"),
    ],
    ids=["missing", "empty", "binary", "no-csv-in-folder"],
)
def test_schema_diff_on_unusable_data_names_the_path(
    tmp_path, capsys, make, named, expected
) -> None:
    path = make(tmp_path)
    assert cli.main(["schema-diff", "--data", path]) == cli.EXIT_RUN_FAILED
    _one_line_error(capsys, str(tmp_path / named).rstrip("/"), expected)


# monitor ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A request log folder with 200 logged taxi rows (the server's own logger)."""
    with open(os.path.join(source_lib.default_source(), "data.csv")) as f:
        rows = [row for _, row in zip(range(200), csv.DictReader(f), strict=False)]
    directory = str(tmp_path_factory.mktemp("logs"))
    log_traffic(directory, rows)
    return directory


@pytest.fixture(scope="module")
def baseline(logs: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    with open(os.path.join(source_lib.default_source(), "data.csv")) as f:
        rows = [row for _, row in zip(range(200), csv.DictReader(f), strict=False)]
    builder = ExampleBuilder(serving_schema.load_features(schemas.schema_path("taxi"), "TRAINING"))
    statistics = monitor.statistics_of_examples(
        [e.SerializeToString() for e in builder.build_all(rows)]
    )
    path = tmp_path_factory.mktemp("baseline") / "FeatureStats.pb"
    path.write_bytes(statistics.SerializeToString())
    return str(path)


def _monitor(logs: str, out: str, baseline: str, *extra: str) -> int:
    return cli.main(
        ["monitor", "--logs", logs, "--output-dir", out, "--baseline-statistics", baseline, *extra]
    )


def test_monitor_with_a_missing_schema_names_it(tmp_path, capsys, logs, baseline) -> None:
    schema = str(tmp_path / "no-schema.pbtxt")
    assert _monitor(logs, str(tmp_path / "out"), baseline, "--schema", schema) == 2
    _one_line_error(capsys, f"schema {schema}: no such file")


def test_monitor_with_garbage_baseline_statistics_names_them(tmp_path, capsys, logs) -> None:
    garbage = tmp_path / "FeatureStats.pb"
    garbage.write_bytes(b"\xff\xfe not statistics")
    assert _monitor(logs, str(tmp_path / "out"), str(garbage)) == 2
    _one_line_error(capsys, f"baseline statistics {garbage}: not TFDV statistics")


def test_monitor_with_garbage_previous_statistics_names_them(
    tmp_path, capsys, logs, baseline
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / monitor.STATISTICS_FILE).write_bytes(b"\xff\xfe not statistics")
    assert _monitor(logs, str(out), baseline) == 2
    _one_line_error(capsys, str(out / monitor.STATISTICS_FILE), "not TFDV statistics")


def test_monitor_with_an_output_path_that_is_a_file(tmp_path, capsys, logs, baseline) -> None:
    out = tmp_path / "report"
    out.write_text("a file")
    assert _monitor(logs, str(out), baseline) == 2
    _one_line_error(capsys, f"output dir {out}: exists and is not a folder")


def test_monitor_says_which_log_files_it_skipped_and_why(tmp_path, capsys, baseline) -> None:
    with open(os.path.join(source_lib.default_source(), "data.csv")) as f:
        rows = [row for _, row in zip(range(100), csv.DictReader(f), strict=False)]
    log_traffic(str(tmp_path), rows)
    corrupt = tmp_path / "prediction_log-corrupt.tfrecord"
    corrupt.write_bytes(os.urandom(200))
    out = tmp_path / "out"
    code = _monitor(str(tmp_path), str(out), baseline)
    printed = capsys.readouterr().out
    assert code in (monitor.EXIT_OK, monitor.EXIT_ALERT), printed
    [skipped] = [line for line in printed.splitlines() if line.startswith("SKIPPED ")]
    assert skipped.startswith(f"SKIPPED {corrupt}: corrupt or truncated TFRecord after 0 records")
    import json

    summary = json.loads((out / "summary.json").read_text())
    assert [s["file"] for s in summary["skipped_files"]] == [str(corrupt)]


def test_monitor_config_errors_are_one_line(tmp_path, capsys, logs, baseline) -> None:
    assert _monitor(logs, str(tmp_path), baseline, "--set", "window_hours=0") == 2
    _one_line_error(capsys, "config error", "window_hours")


# rollback --------------------------------------------------------------------------------------


def test_rollback_onto_an_existing_withdrawn_name_renames_nothing(tmp_path, capsys) -> None:
    import model_contract

    base = tmp_path / "m"
    for version in ("100", "200", "300"):
        (base / version / "variables").mkdir(parents=True)
        (base / version / model_contract.SAVED_MODEL_FILE).write_bytes(b"model")
    taken = base / model_contract.rolled_back_name(300)
    taken.mkdir()
    before = sorted(p.name for p in base.iterdir())
    assert cli.main(["rollback", "--model-dir", str(base), "--to", "100"]) == cli.EXIT_RUN_FAILED
    _one_line_error(capsys, f"{taken} already exists", "Nothing was renamed")
    assert sorted(p.name for p in base.iterdir()) == before


# check -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"root: [unclosed\n  - x: {", "not valid YAML (line"),
        (b"", "not a KFP pipeline spec"),
        (b"\xff\xfe\x00binary", "is not UTF-8 text"),
    ],
    ids=["invalid-yaml", "empty", "binary"],
)
def test_check_on_a_file_that_is_not_a_spec_names_it(tmp_path, capsys, content, expected) -> None:
    spec = tmp_path / "pipeline.yaml"
    spec.write_bytes(content)
    assert cli.main(["check", "--spec", str(spec)]) == cli.EXIT_RUN_FAILED
    _one_line_error(capsys, str(spec), expected)


def test_check_on_a_missing_spec_names_it(tmp_path, capsys) -> None:
    spec = tmp_path / "none.yaml"
    assert cli.main(["check", "--spec", str(spec)]) == cli.EXIT_RUN_FAILED
    _one_line_error(capsys, str(spec), "cannot read the pipeline spec")


# run -------------------------------------------------------------------------------------------


def test_run_checks_the_source_header_before_building_the_pipeline(tmp_path, capsys) -> None:
    data = tmp_path / "data.csv"
    data.write_text("fare,tips,fare\n1.0,2.0,999.0\n")
    argv = ["run", "--set", f"source_data={data}", "--set", f"output_dir={tmp_path / 'out'}"]
    assert cli.main(argv) == cli.EXIT_RUN_FAILED
    _one_line_error(
        capsys,
        f"data error: {data}: column 'fare' appears 2 times in the header (columns 1, 3)",
    )
    assert not (tmp_path / "out").exists()  # Nothing was built or run.


def test_monitor_takes_the_schema_from_its_config_file(tmp_path, capsys, logs, baseline) -> None:
    import json

    missing = tmp_path / "from-file.pbtxt"
    config = tmp_path / "monitor.json"
    config.write_text(json.dumps({"schema_path": str(missing)}))
    assert _monitor(logs, str(tmp_path / "out"), baseline, "--config", str(config)) == 2
    _one_line_error(capsys, f"schema {missing}: no such file")
