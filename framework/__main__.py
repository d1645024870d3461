"""``python -m framework`` is the ``deepdive`` command."""

import sys

from framework.cli import main

sys.exit(main())
