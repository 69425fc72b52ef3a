"""`python -m facefuse.cli`: the same as the `facefuse` command."""

import sys

from . import main

sys.exit(main())
