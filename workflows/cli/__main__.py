"""``python -m workflows.cli`` runs the ``equicalc`` command."""

import sys

from . import main

sys.exit(main())
