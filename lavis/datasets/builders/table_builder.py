"""Shared builder logic for file-based data sets: parse -> checked table -> ``SampleTable`` per split.

A subclass only parses its format into ``SplitTable``s (one per split); this class adds the
checks every data set needs (image paths stay under the root, question ids unique where they must
be, dense ``image_id`` per unique image) and wraps each table with its processors.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from lavis.common.errors import ConfigError, DataError
from lavis.common.path_rules import check_under_root
from lavis.datasets.annotations import ROW, WHERE, check_unique, data_file, data_files
from lavis.datasets.builders.base_builder import BaseDatasetBuilder
from lavis.datasets.builders.qa_rows import qa_table, read_parquet_qa
from lavis.datasets.datasets.sample_table import IMAGE_BYTES, SampleTable
from lavis.processors.base_processor import build_processor

logger = logging.getLogger(__name__)


@dataclass
class SplitTable:
    """One split's parsed rows; ``source`` names the file(s), ``image_field`` the image column."""

    table: pa.Table
    image_root: Path | None
    source: str
    image_field: str = "image"

    def where(self, index: int) -> str:
        """Where table row ``index`` came from: ``"file: line N"`` or ``"file: row N"``."""
        if WHERE in self.table.column_names:
            return str(self.table.column(WHERE)[index].as_py())
        if ROW in self.table.column_names:
            return f"{self.source}: row {self.table.column(ROW)[index].as_py()}"
        return f"{self.source}: row {index + 1}"


def with_image_ids(table: pa.Table) -> pa.Table:
    """Add ``image_id``: dense 0..n-1 per unique ``image_path`` in order of first appearance."""
    codes = pc.dictionary_encode(table.column("image_path")).combine_chunks().indices
    ids = pc.cast(codes, pa.int64())
    if "image_id" in table.column_names:
        table = table.drop_columns(["image_id"])
    return table.append_column("image_id", ids)


class StorageBuilder(BaseDatasetBuilder):
    """A builder whose files live under ``storage`` and whose splits use the configured processors."""

    def root(self) -> Path:
        if not self.cfg.storage:
            raise ConfigError(
                f"missing config key 'datasets.{self.name}.storage': set it to the folder that holds "
                f"the {self.name} files (see docs/datasets.md)"
            )
        root = Path(self.cfg.storage).expanduser()
        if not root.is_dir():
            raise ConfigError(f"config key 'datasets.{self.name}.storage': folder {root} does not exist")
        return root

    def processor(self, which: str, kind: str) -> Any:
        """``which`` is vis_processor or text_processor; ``kind`` is train or eval."""
        specs = getattr(self.cfg, which) or {}
        return build_processor(specs.get(kind), f"datasets.{self.name}.{which}.{kind}")


class TableBuilder(StorageBuilder):
    """Builds ``{split: SampleTable}`` from the ``SplitTable``s that ``load_splits`` parses."""

    def load_splits(self) -> dict[str, SplitTable]:
        raise NotImplementedError  # abstract: each data set parses its own format

    def split_files(self, files: Mapping[str, str | None]) -> Iterator[tuple[str, str, str]]:
        """``(split, file or glob, its config key)`` for each split of ``files: {split: file}``."""
        for split, name in files.items():
            if name is not None:  # null leaves a split of the defaults out
                yield split, name, f"datasets.{self.name}.files.{split}"

    def file_splits(
        self, read: Callable[[Path], list[dict[str, Any]]], image_field: str = "image"
    ) -> dict[str, SplitTable]:
        """For configs with ``files: {split: file}`` and ``image_dir``: one parsed file per split."""
        root = self.root()
        splits = {}
        for split, name, key in self.split_files(self.cfg.files):
            path = data_file(root, name, key)
            splits[split] = SplitTable(qa_table(read(path)), root / self.cfg.image_dir, str(path), image_field)
        return splits

    def parquet_qa_split(self, root: Path, pattern: str, key: str) -> SplitTable:
        """One split from question/answer parquet files (``pattern`` a file or glob under ``root``);
        their images are bytes in the table, so there is no image folder."""
        paths = data_files(root, pattern, key)
        return SplitTable(read_parquet_qa(paths), None, str(paths[0]))

    def check(self, split: str, data: SplitTable) -> pa.Table:
        table = data.table
        if IMAGE_BYTES not in table.column_names and data.image_root is not None:
            check_under_root(table.column("image_path"), data.image_root, data.image_field, data.where)
        if "question_id" in table.column_names:
            # Evaluation scores each question once by id: ids must be unique outside training.
            check_unique(table.column("question_id").to_pylist(), data.source, "question_id", split != "train")
        table = table.drop_columns([c for c in (WHERE, ROW) if c in table.column_names])
        return with_image_ids(table)

    def build(self) -> dict[str, SampleTable]:
        datasets = {}
        for split, data in self.load_splits().items():
            if data.table.num_rows == 0:
                raise DataError(f"{data.source}: no samples for split '{split}' of datasets.{self.name} (the file holds no records, or all were filtered out)")
            table = self.check(split, data)
            kind = "train" if split == "train" else "eval"
            datasets[split] = SampleTable(
                table,
                data.image_root,
                vis_processor=self.processor("vis_processor", kind),
                text_processor=self.processor("text_processor", kind),
                strict=self.cfg.strict,
                max_pixels=self.cfg.max_image_pixels,
            )
            logger.info("%s/%s: %d samples from %s", self.name, split, len(table), data.source)
        return datasets
