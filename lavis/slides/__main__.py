"""``python -m lavis.slides``: see :mod:`lavis.slides.cli`."""

import sys

from lavis.slides.cli import main

sys.exit(main())
