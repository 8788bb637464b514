"""``python -m lavis.slides``: see :mod:`lavis.apps.slides.cli`."""

import sys

from lavis.apps.slides.cli import main

sys.exit(main())
