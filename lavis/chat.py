"""``python -m lavis.chat``: the short command name of the application in :mod:`lavis.apps.chat`."""

import sys

from lavis.apps.chat import main

if __name__ == "__main__":
    sys.exit(main())
