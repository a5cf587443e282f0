"""The `ServedModel` step on KFP: checks the written volumes, then reports the served model.

A plain container task (no TFX, no TensorFlow for a mounted path), always run, in parallel with
`SourceFingerprint` at the start of every run:

1. every mounted path a later step writes (`--writable`: the serving model directory the
   Pusher and DriftGate write, Beam's `temp_location` when on a claim) is created if missing
   and probed with a file write, failing with the path, the uid and what to do
   (`runners.kubeflow.pod.writable`), before hours of work;
2. the served model's identity (`components.latest_pushed_model.served`: version, digest of
   its push manifest, rolled-back versions) is written as the STRING output parameter that
   LatestPushedModel and DriftGate take as an input, so KFP's cache key, which covers
   parameter values and never the serving directory (`backend/src/v2/driver/cache.go`),
   changes exactly when the served model does.
"""

import argparse
import os
import sys
from collections.abc import Sequence

import model_contract
from runners.kubeflow.pod.parameters import write_string_output
from runners.kubeflow.pod.writable import NotWritableError, check_writable


def _filesystem(model_dir: str) -> model_contract.FileSystem:
    if model_dir.startswith("/"):
        return model_contract.LocalFileSystem()
    import tensorflow as tf  # gs://: only TensorFlow's filesystem reads it.

    fs: model_contract.FileSystem = tf.io.gfile
    return fs


def main(argv: Sequence[str] | None = None) -> int:
    """Checks the writable paths, computes and writes the identity.

    Args:
      argv: `--model-dir DIR [--writable PATH:MOUNT ...] --output FILE` (default
        sys.argv[1:]).

    Returns:
      0 on success, 1 when a path is not writable (message on stderr).
    """
    from components.latest_pushed_model.served import served_model_identity

    parser = argparse.ArgumentParser(prog="python -m runners.kubeflow.pod.served_model")
    parser.add_argument("--model-dir", required=True, help="<serving_base>/<model_name>")
    parser.add_argument(
        "--writable",
        action="append",
        default=[],
        metavar="PATH:MOUNT",
        help="a mounted directory later steps write, and the mount it is on",
    )
    parser.add_argument("--output", required=True, help="file KFP reads the output from")
    args = parser.parse_args(argv)
    for entry in args.writable:
        path, _, mount = entry.partition(":")
        try:
            writers = "the Pusher and DriftGate" if path == args.model_dir else "the Beam steps"
            check_writable(path, mount=mount or None, writers=writers)
        except NotWritableError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        print(f"{path}: writable by uid {os.getuid()}")
    identity = served_model_identity(_filesystem(args.model_dir), args.model_dir)
    write_string_output(args.output, identity)
    print(f"{args.model_dir}: {identity}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
