"""``python -m lavis.predict``: the short command name of the application in :mod:`lavis.apps.predict`."""

import sys

from lavis.apps.predict import main

if __name__ == "__main__":
    sys.exit(main())
