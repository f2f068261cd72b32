"""`python -m prunetune.cli`: the console script."""

import sys

from prunetune.cli import main

sys.exit(main())
