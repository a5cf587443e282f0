"""Writes a plain container task's STRING output parameter where KFP's launcher reads it."""

import os


def write_string_output(path: str, value: str) -> None:
    """Writes `value` to the output parameter file `path` (its folder created if missing).

    KFP's launcher reads the file back verbatim as the STRING value
    (`backend/src/v2/component/launcher_v2.go` collectOutputParameters), so no newline is added.
    """
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        f.write(value)
