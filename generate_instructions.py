#!/usr/bin/env python
"""Build CLOVER instruction data from captions (see docs/instructions.md).

    python generate_instructions.py --captions quilt_1M_lookup.csv --out runs/instructions \\
        --mode both --limit 10000 --max-cost 8
"""

import sys

from lavis.instructions.cli import main

if __name__ == "__main__":
    sys.exit(main())
