"""``python -m effbench.cli``: the command line."""

import sys

from effbench.cli.main import main

sys.exit(main())
