"""The console scripts a ``pip install`` puts on PATH for the training entry points
(``lavis-train``, ``lavis-train-stage1``, ``lavis-evaluate``); ``train.py``,
``train_blip2qformer.py`` and ``evaluate.py`` at the repository root call the same functions."""

from __future__ import annotations

from lavis.cli.run import main
from lavis.common.paths import config_path

STAGE1_CONFIG = "train/stage1_quilt1m.yaml"


def train() -> int:
    return main("Train a model from a run config (model + datasets + run).")


def train_stage1() -> int:
    return main("Stage-1 vision-language alignment (BLIP-2 Q-Former).", default_cfg=str(config_path(STAGE1_CONFIG)))


def evaluate() -> int:
    return main("Evaluate a model from a run config.", evaluate_only=True)
