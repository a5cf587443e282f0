"""Runs the front: `python -m serving.front --backend_grpc=127.0.0.1:8510 ...`."""

import sys

from serving.front.cli import main

sys.exit(main())
