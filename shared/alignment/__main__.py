"""``python -m shared.alignment SUBCOMMAND``."""

import sys

from shared.alignment.cli import main

sys.exit(main())
