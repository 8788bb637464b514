"""``python -m lavis.doctor``: the short command name of the application in :mod:`lavis.apps.doctor`."""

import sys

from lavis.apps.doctor.__main__ import main

if __name__ == "__main__":
    sys.exit(main())
