"""Train any run config (stage 2 instruction tuning by default usage).

    python train.py --cfg-path configs/train/stage2_clover_flant5xl.yaml
    torchrun --nproc_per_node=8 train.py --cfg-path ... --options run.batch_size_train=16
"""

import sys

from lavis.cli.scripts import train

if __name__ == "__main__":
    sys.exit(train())
