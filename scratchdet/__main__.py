"""`python -m scratchdet ...` is the `scratchdet` command."""

import sys

from scratchdet.cli import main

sys.exit(main())
