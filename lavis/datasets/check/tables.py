"""Completeness of a file-based data set, split by split, as its builder parses it.

Per split: rows, unique images and how many are readable / missing / unreadable (decoded),
duplicate rows and duplicate question ids (counted here rather than failing the build, so one
report shows all of it), and the first few bad images with the reason.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from lavis.common.errors import DataError
from lavis.common.path_rules import check_under_root
from lavis.datasets.builders.table_builder import SplitTable, TableBuilder
from lavis.datasets.check.probe import OK, STATUS_NAMES, ProbeResult, probe_images
from lavis.datasets.datasets.sample_table import IMAGE_BYTES

EXAMPLES = 5


def duplicates(table: pa.Table, key_columns: list[str]) -> int:
    """Rows beyond the first with the same values in ``key_columns``."""
    columns = [table.column(c).to_pylist() for c in key_columns if c in table.column_names]
    counts = Counter(zip(*columns))
    return sum(count - 1 for count in counts.values())


def unique_images(data: SplitTable) -> tuple[list[str], np.ndarray]:
    """Distinct image keys in first-seen order, and each row's index into them."""
    keys: dict[str, int] = {}
    index = np.empty(data.table.num_rows, dtype=np.int64)
    for row, path in enumerate(data.table.column("image_path").to_pylist()):
        index[row] = keys.setdefault(path, len(keys))
    return list(keys), index


def bad_examples(result: ProbeResult, names: list[str], limit: int = EXAMPLES) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {"missing": [], "unreadable": []}
    for position in sorted(result.reasons):
        kind = STATUS_NAMES[result.status[position]]
        if len(out[kind]) < limit:
            out[kind].append(f"{names[position]}: {result.reasons[position]}")
    return out


def probe_split(data: SplitTable, workers: int, max_pixels: int, desc: str) -> tuple[ProbeResult, list[str], np.ndarray]:
    """Decode each distinct image of one split once."""
    names, row_index = unique_images(data)
    if IMAGE_BYTES in data.table.column_names:
        first_row = np.full(len(names), -1, dtype=np.int64)
        for row, image in enumerate(row_index):
            if first_row[image] < 0:
                first_row[image] = row
        blobs = data.table.column(IMAGE_BYTES).combine_chunks()
        result = probe_images([None] * len(names), blobs, first_row.tolist(), workers, max_pixels, desc)
    else:
        root = data.image_root or Path()
        result = probe_images([root / name for name in names], workers=workers, max_pixels=max_pixels, desc=desc)
    return result, names, row_index


def check_table_split(name: str, split: str, data: SplitTable, workers: int, max_pixels: int) -> dict[str, Any]:
    table = data.table
    if IMAGE_BYTES not in table.column_names and data.image_root is not None:
        check_under_root(table.column("image_path"), data.image_root, data.image_field, data.where)
    result, names, row_index = probe_split(data, workers, max_pixels, f"{name}/{split}")
    readable_rows = int(np.count_nonzero(result.status[row_index] == OK))
    entry: dict[str, Any] = {
        "rows": table.num_rows,
        "rows_with_readable_image": readable_rows,
        **result.counts(),
        "duplicate_rows": duplicates(table, ["image_path", "text_input", "text_output"]),
        "examples": bad_examples(result, names),
        "source": data.source,
    }
    if "question_id" in table.column_names:
        entry["duplicate_question_ids"] = duplicates(table, ["question_id"])
    if data.image_root is not None and IMAGE_BYTES not in table.column_names:
        entry["image_folder"] = str(data.image_root)
    return entry


def check_tables(name: str, builder: TableBuilder, workers: int) -> dict[str, Any]:
    """``{split: entry}`` for every split the builder parses."""
    splits = {}
    for split, data in builder.load_splits().items():
        try:
            splits[split] = check_table_split(name, split, data, workers, builder.cfg.max_image_pixels)
        except DataError as err:  # e.g. image paths leaving the root: report it, check the rest
            splits[split] = {"error": str(err)}
    return splits
