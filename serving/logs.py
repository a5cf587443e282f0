"""Structured (JSON lines) logging for the server and client entry points."""

from __future__ import annotations

import logging
import time

from pythonjsonlogger.json import JsonFormatter


class _UtcJsonFormatter(JsonFormatter):
    # ISO-8601 UTC with milliseconds (`2026-11-24T16:12:37.123Z`), as log collectors expect.
    converter = time.gmtime  # type: ignore[assignment]  # typeshed: gmtime(secs=None)
    default_time_format = "%Y-%m-%dT%H:%M:%S"
    default_msec_format = "%s.%03dZ"


def json_formatter() -> logging.Formatter:
    """One JSON object per record: ts, level, logger, message, extra fields, exception."""
    return _UtcJsonFormatter(
        "%(asctime)s %(levelname)s %(name)s %(message)s",
        rename_fields={
            "asctime": "ts",
            "levelname": "level",
            "name": "logger",
            "exc_info": "exception",
        },
    )


def configure(level: str = "INFO", fmt: str = "json") -> None:
    """Configures the root logger once, at an entry point.

    Args:
      level: Log level name.
      fmt: `json` (one object per line) or `text`.
    """
    handler = logging.StreamHandler()
    if fmt == "json":
        handler.setFormatter(json_formatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
