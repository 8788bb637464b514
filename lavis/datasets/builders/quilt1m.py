"""Quilt-1M image-caption pairs from ``quilt_1M_lookup.csv`` and the image folder.

About 1.02M rows; one image can have several captions, and all of them share one ``image_id`` so
that ITC treats them as positives. The CSV is read with pyarrow and filtered with vectorised
compute (subset, split, pathology), so building costs seconds, not a per-row Python loop.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from lavis.common.errors import ConfigError, DataError
from lavis.datasets.annotations import ROW, blank, data_file, read_csv, require_non_null
from lavis.datasets.builders.base_builder import BaseBuilderConfig, register_builder
from lavis.datasets.builders.table_builder import SplitTable, TableBuilder

logger = logging.getLogger(__name__)

QUILT_COLUMNS = (
    "caption", "image_path", "subset", "split", "pathology", "roi_text", "noisy_text",
    "corrected_text", "med_umls_ids", "magnification", "height", "width",
)  # fmt: skip
LATER_COLUMNS = ("single_wsi", "not_histology")  # added by later releases


@dataclasses.dataclass
class Quilt1MFilter:
    """Which rows of the lookup table to use (shared by the builder and the shard tool)."""

    # Column used as the caption: the ASR-derived 'caption' or the LLM-cleaned 'corrected_text'.
    caption_field: Literal["caption", "corrected_text"] = "caption"
    # Keep rows whose 'subset' is one of these (quilt, openpath, pubmed, laion); empty keeps all.
    subsets: list[str] = dataclasses.field(default_factory=list)
    # Keep rows whose 'pathology' mentions one of these (case-insensitive); empty keeps all.
    pathology: list[str] = dataclasses.field(default_factory=list)
    # Rows with an empty caption are dropped with a warning; false makes them an error.
    drop_empty_captions: bool = True


@dataclasses.dataclass
class Quilt1MConfig(BaseBuilderConfig, Quilt1MFilter):
    annotation: str = "quilt_1M_lookup.csv"
    image_dir: str = "quilt_1m"
    # Output split -> value of the CSV's 'split' column; null leaves a default split out.
    splits: dict[str, str | None] = dataclasses.field(default_factory=lambda: {"train": "train", "val": "val"})

    def validate(self) -> None:
        super().validate()
        if not any(self.splits.values()):
            raise ConfigError("'splits' must name at least one split, e.g. {train: train}")


def read_lookup(path: Path, rules: Quilt1MFilter, all_columns: bool = False) -> pa.Table:
    """The lookup CSV with the rows ``rules`` keep (all splits); strings, plus ``_row`` (1-based)."""
    needed = [rules.caption_field, "image_path", "split"]
    needed += ["subset"] if rules.subsets else []
    needed += ["pathology"] if rules.pathology else []
    optional = [c for c in (*QUILT_COLUMNS, *LATER_COLUMNS) if c not in needed] if all_columns else []
    table = read_csv(path, needed, optional)
    table = table.append_column(ROW, pa.array(np.arange(1, table.num_rows + 1, dtype=np.int64)))
    require_non_null(table, "image_path", str(path))
    require_non_null(table, "split", str(path))
    keep = None
    if rules.subsets:
        keep = pc.is_in(table.column("subset"), value_set=pa.array(rules.subsets))
    if rules.pathology:
        pattern = "|".join(re.escape(p) for p in rules.pathology)
        mentions = pc.match_substring_regex(table.column("pathology"), pattern, ignore_case=True)
        keep = mentions if keep is None else pc.and_(keep, mentions)
    if keep is not None:
        table = table.filter(pc.fill_null(keep, False))
    return _drop_empty_captions(table, rules, str(path))


def _drop_empty_captions(table: pa.Table, rules: Quilt1MFilter, source: str) -> pa.Table:
    empty = blank(table.column(rules.caption_field))
    count = pc.sum(empty).as_py() or 0
    if not count:
        return table
    if not rules.drop_empty_captions:
        require_non_null(table, rules.caption_field, source)  # raises, naming the first row
    logger.warning("%s: dropped %d row(s) with an empty '%s'", source, count, rules.caption_field)
    return table.filter(pc.invert(empty))


@register_builder("quilt1m")
class Quilt1MBuilder(TableBuilder):
    """``{split: SampleTable}`` of (image, caption) with ``image_id`` per unique image."""

    Config = Quilt1MConfig
    DEFAULT_CONFIG = "datasets/quilt1m.yaml"

    def load_splits(self) -> dict[str, SplitTable]:
        root = self.root()
        csv_path = data_file(root, self.cfg.annotation, f"datasets.{self.name}.annotation")
        table = read_lookup(csv_path, self.cfg)
        splits = {}
        for name, value in self.cfg.splits.items():
            if value is None:
                continue
            rows = table.filter(pc.equal(table.column("split"), value))
            if rows.num_rows == 0:
                found = pc.unique(table.column("split")).to_pylist()
                raise DataError(f"{csv_path}: no rows with split == {value!r} (for split '{name}'); found {found}")
            columns = {"image_path": "image_path", "text_input": self.cfg.caption_field, ROW: ROW}
            rows = pa.table({key: rows.column(column) for key, column in columns.items()})
            splits[name] = SplitTable(rows, root / self.cfg.image_dir, str(csv_path), "image_path")
        return splits
