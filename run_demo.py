"""`make demo`: train and evaluate CLOVER end to end on real pathology pixels on a CPU.

Writes runs/demo/report.json and runs/demo/report.md. See lavis/apps/demo/pipeline.py.
"""

import sys

from lavis.apps.demo.pipeline import main

if __name__ == "__main__":
    sys.exit(main())
