"""``python -m lavis.slides``: the short command name of the application in :mod:`lavis.apps.slides`."""

import sys

from lavis.apps.slides.cli import main

if __name__ == "__main__":
    sys.exit(main())
