"""A user's own labelled pathology images as question/answer pairs, for few-shot transfer.

Layout (``layout: label/slide``, the default): ``<storage>/<label>/<slide_id>/<image>``; with
``layout: slide/label``: ``<storage>/<slide_id>/<label>/<image>``. Every image yields one QA pair
per template (``question`` plus an ``answers`` entry for each label, e.g. tumor: "yes", normal:
"no"). Slides, never images, are split (no slide in two splits), stratified by each slide's most
common label, with a seeded shuffle; ``k_shot`` then keeps k images per label in ``train``.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import zlib
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any, Literal

import numpy as np

from lavis.common.errors import ConfigError, DataError
from lavis.datasets.builders.base_builder import BaseBuilderConfig, register_builder
from lavis.datasets.builders.qa_rows import answer_type_of, qa_record, qa_table
from lavis.datasets.builders.table_builder import SplitTable, TableBuilder
from lavis.datasets.mixture import largest_remainder

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class QATemplate:
    question: str
    # Label (folder name) -> answer text.
    answers: dict[str, str]


@dataclasses.dataclass
class ImageFolderVQAConfig(BaseBuilderConfig):
    layout: Literal["label/slide", "slide/label"] = "label/slide"
    extensions: list[str] = dataclasses.field(default_factory=lambda: [".png", ".jpg", ".jpeg", ".tif", ".tiff"])
    templates: list[QATemplate] = dataclasses.field(default_factory=list)
    # Fractions of each label's slides per split (largest-remainder rounding).
    split_fractions: dict[str, float] = dataclasses.field(
        default_factory=lambda: {"train": 0.6, "val": 0.2, "test": 0.2}
    )
    # Images per label kept in the train split; 0 keeps all.
    k_shot: int = 0
    seed: int = 0

    def validate(self) -> None:
        super().validate()
        if not self.templates:
            raise ConfigError("'templates' is empty: give at least one {question, answers: {label: answer}}")
        if not self.split_fractions or any(f < 0 for f in self.split_fractions.values()):
            raise ConfigError(f"'split_fractions' must be non-negative fractions, got {self.split_fractions}")
        if abs(sum(self.split_fractions.values()) - 1.0) > 1e-6:
            raise ConfigError(f"'split_fractions' must sum to 1, got {self.split_fractions}")
        if self.k_shot < 0:
            raise ConfigError(f"'k_shot' must be >= 0, got {self.k_shot}")


@dataclasses.dataclass(frozen=True)
class LabelledImage:
    path: str  # relative to the root
    slide: str
    label: str


def scan(root: Path, layout: str, extensions: list[str]) -> list[LabelledImage]:
    """Every image three levels down (<a>/<b>/<file>, files in deeper folders belong to <b>)."""
    suffixes = {e.lower() for e in extensions}
    images = []
    for folder, _, files in os.walk(root):
        parts = Path(folder).relative_to(root).parts
        if len(parts) < 2:
            continue
        first, second = parts[0], parts[1]
        label, slide = (first, second) if layout == "label/slide" else (second, first)
        for name in sorted(files):
            if Path(name).suffix.lower() in suffixes:
                images.append(LabelledImage(str(Path(folder, name).relative_to(root)), slide, label))
    if not images:
        raise DataError(f"{root}: no images ({', '.join(sorted(suffixes))}) found in the {layout} layout")
    return sorted(images, key=lambda image: image.path)


def split_slides(images: list[LabelledImage], fractions: dict[str, float], seed: int) -> dict[str, str]:
    """Slide -> split, stratified by each slide's majority label; seeded and order-independent."""
    labels_of: dict[str, Counter] = defaultdict(Counter)
    for image in images:
        labels_of[image.slide][image.label] += 1
    by_label: dict[str, list[str]] = defaultdict(list)
    for slide, counts in labels_of.items():
        by_label[min(counts, key=lambda label: (-counts[label], label))].append(slide)
    assignment = {}
    for label, slides in sorted(by_label.items()):
        rng = np.random.default_rng([seed, zlib.crc32(label.encode())])
        ordered = sorted(slides)
        order = [ordered[i] for i in rng.permutation(len(ordered))]
        start = 0
        counts = largest_remainder(len(order), list(fractions.values()))
        for split, count in zip(fractions, counts):
            assignment.update({slide: split for slide in order[start : start + count]})
            start += count
    return assignment


def k_shot(images: list[LabelledImage], k: int, seed: int) -> list[LabelledImage]:
    """k images per label (seeded); a label with fewer keeps all of them, with a warning."""
    by_label: dict[str, list[LabelledImage]] = defaultdict(list)
    for image in images:
        by_label[image.label].append(image)
    kept = []
    for label, group in sorted(by_label.items()):
        if len(group) < k:
            logger.warning("k_shot=%d: label %r has only %d training image(s); using all", k, label, len(group))
            kept.extend(group)
            continue
        rng = np.random.default_rng([seed, zlib.crc32(label.encode()), k])
        kept.extend(group[i] for i in sorted(rng.choice(len(group), size=k, replace=False)))
    return kept


def check_templates(images: list[LabelledImage], templates: list[QATemplate], where: str) -> None:
    """Every label folder found needs an answer in every template."""
    labels = sorted({image.label for image in images})
    for index, template in enumerate(templates):
        missing = [label for label in labels if label not in template.answers]
        if missing:
            raise ConfigError(
                f"config key '{where}.templates[{index}].answers' has no answer for label(s) {missing} "
                f"(labels found: {labels})"
            )


def qa_rows(images: list[LabelledImage], templates: list[QATemplate], where: str) -> list[dict[str, Any]]:
    rows = []
    for image in images:
        for index, template in enumerate(templates):
            answer = template.answers[image.label]
            qid = f"{image.path}#{index}"
            rows.append(qa_record(image.path, template.question, answer, qid, answer_type_of(None, answer, where)))
    return rows


@register_builder("image_folder_vqa")
class ImageFolderVQABuilder(TableBuilder):
    Config = ImageFolderVQAConfig
    DEFAULT_CONFIG = "datasets/image_folder_vqa.yaml"

    def load_splits(self) -> dict[str, SplitTable]:
        root = self.root()
        images = scan(root, self.cfg.layout, self.cfg.extensions)
        check_templates(images, self.cfg.templates, f"datasets.{self.name}")
        assignment = split_slides(images, self.cfg.split_fractions, self.cfg.seed)
        splits = {}
        for split, fraction in self.cfg.split_fractions.items():
            if fraction == 0:
                continue
            members = [image for image in images if assignment[image.slide] == split]
            if split == "train" and self.cfg.k_shot:
                members = k_shot(members, self.cfg.k_shot, self.cfg.seed)
            if not members:
                logger.warning("%s: split %r has no slides; it is left out", self.name, split)
                continue
            rows = qa_rows(members, self.cfg.templates, f"datasets.{self.name}")
            splits[split] = SplitTable(qa_table(rows), root, str(root))
        return splits
