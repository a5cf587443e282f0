"""Checks, before any work, that the paths the pipeline's steps write are writable by this user.

On Kubernetes the image runs as uid 65532 and the compiled spec sets no `fsGroup` (KFP's
`KubernetesExecutorConfig` has no pod security context), so a claim whose root is owned by
root is readable but not writable: without this check the first symptom is a failed push
at the end of a long run. Standard library only: the KFP task running it stays cheap.
"""

import os
import stat
import uuid

# The uid the pipeline image runs as (`kubeflow/pipeline/Dockerfile`, `USER 65532:65532`).
IMAGE_UID = 65532


class NotWritableError(PermissionError):
    """A path a step writes is not writable; the message says which, by whom, and the fix."""


def _nearest_existing(path: str) -> str:
    current = os.path.abspath(path)
    while not os.path.exists(current) and os.path.dirname(current) != current:
        current = os.path.dirname(current)
    return current


def _describe_owner(path: str) -> str:
    try:
        info = os.stat(path)
    except OSError as e:
        return f"{path}: cannot stat ({e})"
    mode = stat.filemode(info.st_mode)
    return f"{path} is owned by uid {info.st_uid} gid {info.st_gid}, mode {mode}"


def check_writable(path: str, *, mount: str | None = None, writers: str = "") -> None:
    """Creates `path` if missing and writes and removes a probe file in it.

    Args:
      path: A directory a step writes (e.g. the serving model directory).
      mount: The volume's mount path, for the `chown` the message suggests (default `path`).
      writers: Which steps write there, for the message.

    Raises:
      NotWritableError: Naming the path, this process's uid and gid, the owner and mode of
        the nearest existing folder, and what to do.
    """
    probe = os.path.join(path, f".write-probe-{uuid.uuid4().hex}")
    try:
        os.makedirs(path, exist_ok=True)
        with open(probe, "wb"):
            pass
        os.remove(probe)
    except OSError as e:
        uid, gid = os.getuid(), os.getgid()
        root = mount or path
        raise NotWritableError(
            f"{path} is not writable by uid {uid} (gid {gid})"
            + (f"; {writers} write there" if writers else "")
            + f": {e.strerror or e}. {_describe_owner(_nearest_existing(path))}. The pipeline "
            f"image runs as uid {IMAGE_UID} and KFP sets no fsGroup on its pods: make the "
            f"volume writable by uid {uid} once, e.g. from a pod running as root that mounts "
            f"the claim, `chown -R {uid}:{gid} {root}`; or run where pods get an fsGroup (e.g. "
            "OpenShift's restricted SCC) with a storage class whose CSI driver applies it "
            "(fsGroupPolicy: File). See docs/kubeflow.md, Cluster prerequisites."
        ) from e
