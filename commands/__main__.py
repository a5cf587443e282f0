"""`python -m commands`: the `taxi` command without the console script."""

import sys

from commands.cli import main

sys.exit(main())
