"""Stage 1: align the Q-Former to the frozen image encoder on Quilt-1M (ITC + ITM + ITG).

    torchrun --nproc_per_node=8 train_blip2qformer.py                 # the default config below
    python train_blip2qformer.py --cfg-path configs/demo/stage1.yaml
"""

import sys
from pathlib import Path

from lavis.cli import main

DEFAULT_CFG = str(Path(__file__).resolve().parent / "configs/train/stage1_quilt1m.yaml")

if __name__ == "__main__":
    sys.exit(main("Stage-1 vision-language alignment (BLIP-2 Q-Former).", default_cfg=DEFAULT_CFG))
