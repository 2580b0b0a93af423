"""``python -m clusterresync.plugin``: the same as ``kubectl-resync``."""

import sys

from .cli import main

sys.exit(main())
