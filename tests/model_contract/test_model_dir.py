"""The model directory contract on real directories: versions, atomic push, rollback."""

import json
import os
import pathlib

import pytest

import model_contract
from model_contract import LocalFileSystem

FS = LocalFileSystem()
FILES = ("saved_model.pb", "variables/variables.index", "variables/variables.data-00000-of-00001")


def _model(path: pathlib.Path, marker: str = "m") -> str:
    """A SavedModel-shaped directory (the contract looks at names, not at TF's bytes)."""
    for rel in FILES:
        (path / rel).parent.mkdir(parents=True, exist_ok=True)
        (path / rel).write_text(f"{marker}:{rel}")
    return str(path)


def test_a_version_is_a_numeric_child_with_saved_model_pb(tmp_path) -> None:
    base = tmp_path / "m"
    _model(base / "7")
    _model(base / "12")
    (base / "13" / "variables").mkdir(parents=True)  # no saved_model.pb: not (yet) a version
    _model(base / ".tmp-14-abc")  # staging
    _model(base / "_rolled_back_15")  # withdrawn
    _model(base / "v16")
    _model(base / "\u0661\u0667")  # Arabic-Indic digits: str.isdigit() says yes, TF Serving no
    assert model_contract.list_versions(FS, str(base)) == [7, 12]
    assert model_contract.list_version_dirs(FS, str(base)) == {
        7: str(base / "7"),
        12: str(base / "12"),
    }
    assert model_contract.latest_version(FS, str(base)) == 12
    assert model_contract.list_versions(FS, str(tmp_path / "missing")) == []
    assert model_contract.latest_version(FS, str(tmp_path / "missing")) is None


def test_names() -> None:
    assert model_contract.parse_version("42/") == 42  # object stores list directories with "/"
    assert model_contract.parse_version(model_contract.staging_name(42, "ab")) is None
    assert model_contract.parse_version(model_contract.rolled_back_name(42)) is None
    assert model_contract.withdrawn_version(model_contract.rolled_back_name(42)) == 42
    assert model_contract.withdrawn_version("42") is None
    assert model_contract.next_version([], 1700000000.9) == 1700000000
    assert model_contract.next_version([1700000005], 1700000000.0) == 1700000006
    with pytest.raises(ValueError, match="without '/'"):
        model_contract.staging_name(1, "a/b")


class _Watching(LocalFileSystem):
    """The local filesystem, checking after every change what a TF Serving poll would see."""

    def __init__(self, model_dir: str, expected: set[str]) -> None:
        self.model_dir = model_dir
        self.expected = expected
        self.checks = 0

    def _check(self) -> None:
        self.checks += 1
        for version, path in model_contract.list_version_dirs(self, self.model_dir).items():
            found = {
                os.path.relpath(os.path.join(d, f), path) for d, _, fs in os.walk(path) for f in fs
            }
            assert found == self.expected, f"version {version} visible half-written: {found}"

    def copy(self, src: str, dst: str, overwrite: bool = False) -> None:
        super().copy(src, dst, overwrite)
        self._check()

    def rename(self, src: str, dst: str, overwrite: bool = False) -> None:
        super().rename(src, dst, overwrite)
        self._check()


def test_push_never_exposes_a_half_written_version(tmp_path) -> None:
    base = str(tmp_path / "serving" / "m")
    fs = _Watching(base, {*FILES, model_contract.MANIFEST_FILE})
    result = model_contract.push_version(
        fs, base, _model(tmp_path / "src"), {"model_uri": "/runs/1/model"}, now=1e9, token="t"
    )
    assert fs.checks == len(FILES) + 1
    assert (result.outcome, result.version) == (model_contract.PUSHED, 1000000000)
    assert os.listdir(base) == ["1000000000"]  # the staging copy was renamed, not left behind
    manifest = model_contract.read_manifest(FS, result.path)
    assert manifest == result.manifest
    assert manifest["model_uri"] == "/runs/1/model" and manifest["version"] == 1000000000
    assert manifest["model_name"] == "m" and manifest["pushed_at"].startswith("2001-09-09T01:46:40")


class _ObjectStore(LocalFileSystem):
    """An `obj://` filesystem stored in a local folder, so `push_version` takes its object path."""

    def __init__(self, root: pathlib.Path) -> None:
        self.root = root
        self.renames: list[str] = []

    def _local(self, path: str) -> str:
        assert path.startswith("obj://"), path
        return str(self.root / path[len("obj://") :])

    def exists(self, path: str) -> bool:
        return super().exists(self._local(path))

    def isdir(self, path: str) -> bool:
        return super().isdir(self._local(path))

    def listdir(self, path: str) -> list[str]:
        return super().listdir(self._local(path))

    def makedirs(self, path: str) -> None:
        super().makedirs(self._local(path))

    def copy(self, src: str, dst: str, overwrite: bool = False) -> None:
        super().copy(self._local(src), self._local(dst), overwrite)

    def rename(self, src: str, dst: str, overwrite: bool = False) -> None:
        assert not super().isdir(self._local(src)), "object stores rename objects, not folders"
        self.renames.append(dst)
        super().rename(self._local(src), self._local(dst), overwrite)

    def walk(self, top: str):
        for d, subdirs, files in super().walk(self._local(top)):
            yield "obj://" + os.path.relpath(d, self.root), subdirs, files

    def rmtree(self, path: str) -> None:
        super().rmtree(self._local(path))

    def GFile(self, name: str, mode: str = "r"):  # noqa: N802
        return super().GFile(self._local(name), mode)


def test_push_to_an_object_store_renames_saved_model_pb_last(tmp_path) -> None:
    store = _ObjectStore(tmp_path)
    _model(tmp_path / "src")
    result = model_contract.push_version(
        store, "obj://bucket/m", "obj://src", {"model_uri": "u"}, now=5.0, token="t"
    )
    assert result.path == "obj://bucket/m/5"
    assert store.renames[-1] == "obj://bucket/m/5/saved_model.pb"
    assert len(store.renames) == len(FILES) + 1
    assert sorted(os.listdir(tmp_path / "bucket" / "m")) == ["5"]  # staging removed


def test_failed_push_leaves_no_version_and_no_staging(tmp_path) -> None:
    class _DiskFull(LocalFileSystem):
        def copy(self, src: str, dst: str, overwrite: bool = False) -> None:
            if dst.endswith("saved_model.pb"):
                raise OSError("disk full")
            super().copy(src, dst, overwrite)

    base = tmp_path / "m"
    _model(base / "3")
    with pytest.raises(OSError, match="disk full"):
        model_contract.push_version(
            _DiskFull(), str(base), _model(tmp_path / "src"), {"model_uri": "u"}, now=9, token="t"
        )
    assert os.listdir(base) == ["3"]


def test_re_pushing_the_served_model_adds_no_version(tmp_path) -> None:
    base = str(tmp_path / "m")
    source = _model(tmp_path / "src")
    first = model_contract.push_version(FS, base, source, {"model_uri": "a"}, now=10, token="1")
    again = model_contract.push_version(FS, base, source, {"model_uri": "a"}, now=20, token="2")
    assert (again.outcome, again.version, again.path) == ("already_serving", 10, first.path)
    other = model_contract.push_version(FS, base, source, {"model_uri": "b"}, now=20, token="3")
    assert (other.outcome, other.version) == ("pushed", 20)
    assert model_contract.list_versions(FS, base) == [10, 20]


def test_push_refuses_what_is_not_a_push(tmp_path) -> None:
    base = str(tmp_path / "m")
    with pytest.raises(ValueError, match="needs 'model_uri'"):
        model_contract.push_version(FS, base, _model(tmp_path / "s"), {}, now=1, token="t")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"no saved_model\.pb"):
        model_contract.push_version(
            FS, base, str(tmp_path / "empty"), {"model_uri": "u"}, now=1, token="t"
        )


def test_a_rolled_back_version_number_is_never_reused(tmp_path) -> None:
    base = tmp_path / "m"
    _model(base / "198")
    _model(base / "199")
    assert model_contract.roll_back(FS, str(base)) == [199]
    assert model_contract.latest_version(FS, str(base)) == 198
    result = model_contract.push_version(
        FS, str(base), _model(tmp_path / "src"), {"model_uri": "u"}, now=199.5, token="t"
    )
    assert result.version == 200
    assert sorted(os.listdir(base)) == ["198", "200", "_rolled_back_199"]


def test_roll_back_to_a_named_version_and_its_errors(tmp_path) -> None:
    base = tmp_path / "m"
    for version in (1, 2, 3):
        _model(base / str(version))
    with pytest.raises(ValueError, match=r"Version 5 is not in .*; versions are \[1, 2, 3\]"):
        model_contract.roll_back(FS, str(base), 5)
    assert model_contract.roll_back(FS, str(base), 1) == [2, 3]
    assert model_contract.list_versions(FS, str(base)) == [1]
    with pytest.raises(ValueError, match="needs an earlier version"):
        model_contract.roll_back(FS, str(base))


def test_manifest_must_be_a_json_object(tmp_path) -> None:
    version = tmp_path / "m" / "1"
    _model(version)
    assert model_contract.read_manifest(FS, str(version)) == {}
    (version / "assets.extra").mkdir()
    (version / model_contract.MANIFEST_FILE).write_text(json.dumps([1]))
    with pytest.raises(ValueError, match="must hold a JSON object, got list"):
        model_contract.read_manifest(FS, str(version))
