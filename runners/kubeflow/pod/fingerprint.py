"""The `SourceFingerprint` step on KFP: writes `fingerprint_source(source_uri)` as its output.

A plain container task (no TFX): KFP's launcher fills `--source-uri` from the `source_uri`
pipeline parameter and `--output` with the output parameter's file, then reads that file back
as a STRING (raw text, `backend/src/v2/component/launcher_v2.go` collectOutputParameters). The
task is never served from KFP's cache: its whole point is to look at the data again.
"""

import argparse
import sys
from collections.abc import Sequence

from components.data_prep.source import DataError, fingerprint_source
from runners.kubeflow.pod.parameters import write_string_output


def main(argv: Sequence[str] | None = None) -> int:
    """Computes and writes the fingerprint.

    Args:
      argv: `--source-uri URI --output FILE` (default: sys.argv[1:]).

    Returns:
      0 on success, 1 when the source cannot be read (message on stderr).
    """
    parser = argparse.ArgumentParser(prog="python -m runners.kubeflow.pod.fingerprint")
    parser.add_argument("--source-uri", required=True, help="source CSV file or directory")
    parser.add_argument("--output", required=True, help="file KFP reads the output from")
    args = parser.parse_args(argv)
    try:
        fingerprint = fingerprint_source(args.source_uri)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    write_string_output(args.output, fingerprint)
    print(f"{args.source_uri}: {fingerprint}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
