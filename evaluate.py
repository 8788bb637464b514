"""Evaluate a model on the test splits of a run config (VQA, captioning), distributed.

    torchrun --nproc_per_node=4 evaluate.py --cfg-path configs/eval/quiltvqa_flant5xl.yaml \
        --checkpoint runs/stage2/checkpoints/best
"""

import sys

from lavis.cli.scripts import evaluate

if __name__ == "__main__":
    sys.exit(evaluate())
