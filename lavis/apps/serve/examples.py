"""Example tiles the web page offers: from ``--examples`` (a folder of images, or a question file
whose images come with a question each), or, for a training run whose data folder holds a
QUILT-VQA question file (the demo's held-out tiles), from that file."""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path
from typing import Any

from lavis.apps.inference.questions import image_folder_rows, read_questions
from lavis.common.errors import DataError

logger = logging.getLogger(__name__)

QUESTION_FILE = "quiltvqa_test_wo_ans.jsonl"
GLASS_OD = 0.1  # optical density above glass (the slide analysis' threshold lands near it on H&E)
MIN_TISSUE = 0.3  # a tile with less stain than this share of its pixels is nearly blank


@dataclasses.dataclass(frozen=True)
class Example:
    path: Path
    name: str
    question: str | None = None


def tissue_share(path: Path) -> float:
    """The share of a tile's pixels that are stained (optical density above glass's), 0 if unreadable."""
    import numpy as np
    from PIL import Image

    from lavis.apps.slides.tissue import optical_density

    try:
        with Image.open(path) as image:
            image.thumbnail((128, 128))
            return float((optical_density(np.asarray(image.convert("RGB"))) > GLASS_OD).mean())
    except (OSError, ValueError):
        return 0.0


def load_examples(source: str | os.PathLike, limit: int = 12) -> list[Example]:
    """Up to ``limit`` examples, one per image (its first question), spread over the source; tiles
    that are mostly glass are offered only when there are not enough with tissue."""
    source = Path(source)
    rows = image_folder_rows(source, "") if source.is_dir() else read_questions(source)
    by_image: dict[Path, Example] = {}
    for row in rows:
        by_image.setdefault(row.image, Example(row.image, row.image_name, row.question or None))
    examples = list(by_image.values())
    with_tissue = [e for e in examples if tissue_share(e.path) >= MIN_TISSUE]
    if len(with_tissue) >= min(limit, len(examples)):
        examples = with_tissue
    else:  # not enough: every tissue tile, then the least blank of the others
        rest = sorted((e for e in examples if e not in with_tissue), key=lambda e: -tissue_share(e.path))
        examples = with_tissue + rest[: limit - len(with_tissue)]
    if len(examples) > limit:  # evenly spaced, so that the demo's groups (stains, sizes) all show
        examples = [examples[round(i * (len(examples) - 1) / (limit - 1))] for i in range(limit)]
    return examples


def run_examples(loaded: Any) -> Path | None:
    """The QUILT-VQA question file in a data folder that the model's training run used, if any."""
    if loaded.kind != "run":
        return None
    from omegaconf import OmegaConf

    from lavis.models.pretrained import run_path_bases  # where the run's relative paths start

    checkpoint = Path(loaded.source).resolve()
    run_dir = next((f for f in checkpoint.parents if (f / "config.yaml").is_file()), None)
    if run_dir is None:
        return None
    datasets = OmegaConf.load(run_dir / "config.yaml").get("datasets") or {}
    for section in datasets.values():
        storage = section.get("storage") if hasattr(section, "get") else None
        for base in run_path_bases(run_dir) if storage else ():
            candidate = base / storage / QUESTION_FILE
            if candidate.is_file():
                return candidate
    return None


def find_examples(loaded: Any, source: str | None, limit: int = 12) -> list[Example]:
    """``--examples`` when given ("none" turns them off), else the run's own test tiles, else none."""
    if source == "none":
        return []
    path = Path(source) if source else run_examples(loaded)
    if path is None:
        return []
    try:
        return load_examples(path, limit)
    except DataError as err:
        if source:
            raise
        logger.warning("no example tiles: %s", err)
        return []
