"""A directory standing in for the buckets behind `gs://`, `s3://`, `minio://` artifact URIs.

Follows `backend/src/v2/objectstore/object_store.go`: objects are files only. UploadBlob walks
a local directory and writes each file (an empty directory leaves nothing behind; a missing
local path is an error the launcher tolerates with a warning); DownloadBlob lists every object
under a key prefix and writes each one (a prefix with no objects downloads nothing, silently).
"""

import os
import shutil

from runners.kubeflow.pod.container import local_path_for_uri


class ObjectStore:
    """Buckets as `<root>/<scheme dir>/<bucket>/<key>` (scheme dirs as the launcher's mounts)."""

    def __init__(self, root: str):
        """Creates the store.

        Args:
          root: Directory holding `gcs/`, `s3/`, `minio/`.
        """
        self.root = root

    def path(self, uri: str) -> str:
        """Returns the store path of a URI.

        Raises:
          ValueError: For a URI without an object-store scheme.
        """
        local = local_path_for_uri(uri, self.root)
        if local is None:
            raise ValueError(f"not an object-store URI (gs://, s3://, minio://): {uri!r}")
        return local

    def list(self, uri: str) -> list[str]:
        """Returns the keys (as URIs) of every object at or under `uri` (prefix `uri/`), sorted."""
        base = self.path(uri)
        if os.path.isfile(base):
            return [uri]
        found = []
        for directory, _, files in os.walk(base):
            for name in files:
                relative = os.path.relpath(os.path.join(directory, name), base)
                found.append(f"{uri.rstrip('/')}/{relative}")
        return sorted(found)

    def upload(self, local_path: str, uri: str) -> None:
        """Writes every file under `local_path` (or the file itself) below `uri`.

        Raises:
          FileNotFoundError: When `local_path` does not exist (the launcher warns and goes on).
        """
        if not os.path.exists(local_path):
            raise FileNotFoundError(f"local path {local_path!r} does not exist")
        if os.path.isfile(local_path):
            _copy_file(local_path, self.path(uri))
            return
        for directory, _, files in os.walk(local_path):
            for name in files:
                source = os.path.join(directory, name)
                _copy_file(
                    source, os.path.join(self.path(uri), os.path.relpath(source, local_path))
                )

    def download(self, uri: str, local_path: str) -> int:
        """Writes every object at or under `uri` to `local_path`; returns how many (0 is fine)."""
        objects = self.list(uri)
        for key in objects:
            relative = key[len(uri.rstrip("/")) + 1 :]
            _copy_file(
                self.path(key), os.path.join(local_path, relative) if relative else local_path
            )
        return len(objects)


def _copy_file(source: str, destination: str) -> None:
    os.makedirs(os.path.dirname(destination), exist_ok=True)
    shutil.copyfile(source, destination)
