"""``python -m framework`` is the ``deepdive`` command."""

import sys

from framework.cli.app import main

sys.exit(main())
