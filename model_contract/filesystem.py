"""The few filesystem calls the contract needs: a subset of `tf.io.gfile`, plus a local one."""

import os
import shutil
from collections.abc import Iterable
from typing import IO, Any, Protocol

from model_contract.layout import SAVED_MODEL_FILE


class FileSystem(Protocol):
    """What the contract calls; the module `tf.io.gfile` satisfies it (local, gs://, s3://...)."""

    def exists(self, path: str) -> bool:
        """True if the path exists."""
        ...

    def isdir(self, path: str) -> bool:
        """True if the path is a directory."""
        ...

    def listdir(self, path: str) -> list[str]:
        """Child names (object stores may end directory names with `/`)."""
        ...

    def makedirs(self, path: str) -> None:
        """Creates a directory and its parents; no error if it exists."""
        ...

    def rename(self, src: str, dst: str, overwrite: bool = False) -> None:
        """Renames a file or directory."""
        ...

    def copy(self, src: str, dst: str, overwrite: bool = False) -> None:
        """Copies one file."""
        ...

    def walk(self, top: str) -> Iterable[tuple[str, list[str], list[str]]]:
        """Yields (directory, subdirectory names, file names), top-down."""
        ...

    def rmtree(self, path: str) -> None:
        """Deletes a directory and everything in it."""
        ...

    def GFile(self, name: str, mode: str = "r") -> IO[Any]:  # noqa: N802 (tf.io.gfile's name)
        """Opens a file."""
        ...


class LocalFileSystem:
    """`FileSystem` over the local disk with the standard library (no TensorFlow needed)."""

    def exists(self, path: str) -> bool:
        """True if the path exists."""
        return os.path.exists(path)

    def isdir(self, path: str) -> bool:
        """True if the path is a directory."""
        return os.path.isdir(path)

    def listdir(self, path: str) -> list[str]:
        """Child names."""
        return os.listdir(path)

    def makedirs(self, path: str) -> None:
        """Creates a directory and its parents; no error if it exists."""
        os.makedirs(path, exist_ok=True)

    def rename(self, src: str, dst: str, overwrite: bool = False) -> None:
        """Renames; like tf.io.gfile, refuses an existing destination unless `overwrite`."""
        if not overwrite and os.path.exists(dst):
            raise FileExistsError(f"Cannot rename {src} to {dst}: the destination exists")
        os.rename(src, dst)

    def copy(self, src: str, dst: str, overwrite: bool = False) -> None:
        """Copies one file; refuses an existing destination unless `overwrite`."""
        if not overwrite and os.path.exists(dst):
            raise FileExistsError(f"Cannot copy {src} to {dst}: the destination exists")
        shutil.copyfile(src, dst)

    def walk(self, top: str) -> Iterable[tuple[str, list[str], list[str]]]:
        """Yields (directory, subdirectory names, file names), top-down."""
        return os.walk(top)

    def rmtree(self, path: str) -> None:
        """Deletes a directory and everything in it."""
        shutil.rmtree(path)

    def GFile(self, name: str, mode: str = "r") -> IO[Any]:  # noqa: N802 (tf.io.gfile's name)
        """Opens a file (text modes as UTF-8)."""
        if "b" in mode:
            return open(name, mode)
        return open(name, mode, encoding="utf-8")


def _relative(path: str, top: str) -> str:
    # String-wise, not os.path.relpath: that would turn `gs://bucket` into a local path.
    top = top.rstrip("/")
    if path.rstrip("/") == top:
        return ""
    if not path.startswith(top + "/"):
        raise ValueError(f"{path} is not under {top}")
    return path[len(top) + 1 :].rstrip("/")


def tree_files(fs: FileSystem, top: str) -> list[str]:
    """Returns every file under `top` as a path relative to it, `saved_model.pb` last.

    The SavedModel file goes last so that a copy or a per-object rename completes the version
    only when everything else is in place (TF's saver and TFX's Pusher keep the same order).

    Args:
      fs: The filesystem.
      top: Directory to list.

    Returns:
      Relative file paths (with `/`), deepest order irrelevant, the top-level
      `saved_model.pb` last.

    Raises:
      FileNotFoundError: If `top` is not a directory.
    """
    if not fs.isdir(top):
        raise FileNotFoundError(f"{top} is not a directory")
    files = []
    for directory, _, names in fs.walk(top):
        base = _relative(directory, top)
        files += [f"{base}/{name}" if base else name for name in names]
    return sorted(files, key=lambda rel: (rel == SAVED_MODEL_FILE, rel))


def copy_tree(fs: FileSystem, src: str, dst: str) -> None:
    """Copies a directory tree file by file, `saved_model.pb` last.

    Args:
      fs: The filesystem.
      src: Source directory (e.g. a Trainer's `Format-Serving`).
      dst: Destination directory; created if missing. Existing files are refused.

    Raises:
      FileNotFoundError: If `src` is not a directory.
    """
    files = tree_files(fs, src)
    fs.makedirs(dst)
    for rel in files:
        target = os.path.join(dst, rel)
        fs.makedirs(os.path.dirname(target))
        fs.copy(os.path.join(src, rel), target, overwrite=False)
