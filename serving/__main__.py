"""Runs the model server: `python -m serving --model_base_path=...`."""

import sys

from serving.cli import main

sys.exit(main())
