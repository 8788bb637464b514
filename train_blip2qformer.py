"""Stage 1: align the Q-Former to the frozen image encoder on Quilt-1M (ITC + ITM + ITG).

    torchrun --nproc_per_node=8 train_blip2qformer.py     # configs/train/stage1_quilt1m.yaml
    python train_blip2qformer.py --cfg-path configs/demo/stage1.yaml
"""

import sys

from lavis.cli.scripts import train_stage1

if __name__ == "__main__":
    sys.exit(train_stage1())
