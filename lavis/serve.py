"""``python -m lavis.serve``: the short command name of the application in :mod:`lavis.apps.serve`."""

import sys

from lavis.apps.serve.__main__ import main

if __name__ == "__main__":
    sys.exit(main())
