"""Staging leftovers of dead pushes and version retention, on real directories."""

import errno
import os
import pathlib
import signal
import subprocess
import sys
import textwrap

import pytest

import model_contract
from model_contract import LocalFileSystem

FS = LocalFileSystem()
DAY = model_contract.DEFAULT_STAGING_MAX_AGE_S


def _model(path: pathlib.Path, marker: str = "m") -> str:
    for rel in ("saved_model.pb", "variables/variables.index"):
        (path / rel).parent.mkdir(parents=True, exist_ok=True)
        (path / rel).write_text(f"{marker}:{rel}")
    return str(path)


def test_staging_version_reads_the_push_start_from_the_name() -> None:
    assert model_contract.staging_version(model_contract.staging_name(1700, "ab")) == 1700
    assert model_contract.staging_version(".tmp-1700-ab/") == 1700
    assert model_contract.staging_version("1700") is None
    assert model_contract.staging_version(".tmp-1700") is None  # no token: not ours
    assert model_contract.staging_version(".tmp-x-ab") is None


def test_a_push_killed_between_copy_and_rename_is_cleaned_by_the_next_push(tmp_path) -> None:
    base = tmp_path / "m"
    source = _model(tmp_path / "src", "old")
    # A real crash: the process is SIGKILLed right before the publishing rename, so no
    # `except`/`finally` of push_version runs.
    script = textwrap.dedent(
        f"""
        import os, signal
        import model_contract
        class Killed(model_contract.LocalFileSystem):
            def rename(self, src, dst, overwrite=False):
                os.kill(os.getpid(), signal.SIGKILL)
        model_contract.push_version(
            Killed(), {str(base)!r}, {source!r}, {{"model_uri": "a"}}, now=1000, token="dead")
        """
    )
    crashed = subprocess.run([sys.executable, "-c", script], check=False)
    assert crashed.returncode == -signal.SIGKILL
    assert os.listdir(base) == [".tmp-1000-dead"]  # the full-size leftover
    assert model_contract.list_versions(FS, str(base)) == []

    # A concurrent push started a minute ago is still writing its copy: never touched.
    _model(base / ".tmp-1000060-live")
    result = model_contract.push_version(
        FS, str(base), source, {"model_uri": "b"}, now=1000 + DAY + 120, token="next"
    )
    assert result.removed_staging == (".tmp-1000-dead",)
    assert sorted(os.listdir(base)) == [".tmp-1000060-live", str(result.version)]


def test_young_staging_is_kept_even_on_its_own(tmp_path) -> None:
    base = tmp_path / "m"
    _model(base / ".tmp-5000-a")
    assert model_contract.remove_stale_staging(FS, str(base), now=5000 + DAY) == []
    assert model_contract.remove_stale_staging(FS, str(base), now=5001 + DAY) == [".tmp-5000-a"]
    assert os.listdir(base) == []
    with pytest.raises(ValueError, match="max_age_s must be > 0"):
        model_contract.remove_stale_staging(FS, str(base), now=1, max_age_s=0)


def test_a_full_disk_during_the_copy_leaves_no_staging_and_no_version(tmp_path) -> None:
    class _FullDisk(LocalFileSystem):
        """The real local filesystem, out of space after the first file."""

        def __init__(self) -> None:
            self.copies = 0

        def copy(self, src: str, dst: str, overwrite: bool = False) -> None:
            self.copies += 1
            if self.copies > 1:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), dst)
            super().copy(src, dst, overwrite)

    base = tmp_path / "m"
    _model(base / "3")
    with pytest.raises(OSError) as raised:
        model_contract.push_version(
            _FullDisk(), str(base), _model(tmp_path / "src"), {"model_uri": "u"}, now=9, token="t"
        )
    assert raised.value.errno == errno.ENOSPC
    assert os.listdir(base) == ["3"]


def test_retention_keeps_the_newest_and_the_protected(tmp_path) -> None:
    base = tmp_path / "m"
    for version in (10, 20, 30, 40):
        _model(base / str(version))
    _model(base / "_rolled_back_50")  # withdrawn: not a version, kept for forensics
    _model(base / ".tmp-60-x")
    retired = model_contract.retire_old_versions(FS, str(base), keep=2, protect=[10])
    assert retired == [20]
    assert sorted(os.listdir(base)) == [".tmp-60-x", "10", "30", "40", "_rolled_back_50"]
    assert model_contract.retire_old_versions(FS, str(base), keep=1) == [10, 30]
    assert model_contract.latest_version(FS, str(base)) == 40
    with pytest.raises(ValueError, match="keep must be >= 1"):
        model_contract.retire_old_versions(FS, str(base), keep=0)


def test_push_with_retention_never_reuses_a_deleted_number(tmp_path) -> None:
    base = str(tmp_path / "m")
    source = _model(tmp_path / "src")
    for i, now in enumerate((100, 200, 300)):
        result = model_contract.push_version(
            FS, base, source, {"model_uri": f"m{i}"}, now=now, token=str(i), keep_versions=2
        )
    assert result.retired == (100,)
    assert model_contract.list_versions(FS, base) == [200, 300]
    # The clock went back: the new version still goes above the latest.
    late = model_contract.push_version(
        FS, base, source, {"model_uri": "m9"}, now=50, token="9", keep_versions=2
    )
    assert (late.version, late.retired) == (301, (200,))
    # Re-blessing the served model deletes nothing.
    again = model_contract.push_version(
        FS, base, source, {"model_uri": "m9"}, now=400, token="a", keep_versions=1
    )
    assert (again.outcome, again.retired) == ("already_serving", ())
    assert model_contract.list_versions(FS, base) == [300, 301]
    with pytest.raises(ValueError, match="keep_versions must be >= 1"):
        model_contract.push_version(
            FS, base, source, {"model_uri": "z"}, now=500, token="b", keep_versions=0
        )
