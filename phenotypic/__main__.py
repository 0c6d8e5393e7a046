"""``python -m phenotypic`` is the ``phenotypic`` console command."""

import sys

from phenotypic.cli import main

sys.exit(main())
