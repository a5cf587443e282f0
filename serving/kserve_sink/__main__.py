"""Runs the sink: `python -m serving.kserve_sink --request_log_dir=...`."""

import sys

from serving.kserve_sink.cli import main

sys.exit(main())
