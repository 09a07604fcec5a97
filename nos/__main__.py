"""``python -m nos``: the command line."""

import sys

from nos.cli import main

sys.exit(main())
