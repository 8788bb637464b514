"""Quilt-1M as it really arrived: images per subset and split, and a lookup CSV of what is usable.

The release is known to come incomplete (images of some subsets missing, some truncated), so
every row of ``quilt_1M_lookup.csv`` is checked, not only those a config selects. The rows whose
image is present and decodes are written, with all original columns in the original order, to
``<annotation stem>_readable.csv`` beside the report: set ``datasets.quilt1m.annotation`` to it
and the builder trains on exactly the images that are there.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pv

from lavis.common.checkpoint import atomic_write_bytes
from lavis.common.path_rules import check_under_root
from lavis.datasets.annotations import blank, data_file, read_csv, require_non_null
from lavis.datasets.builders.quilt1m import Quilt1MBuilder
from lavis.datasets.builders.table_builder import SplitTable
from lavis.datasets.check.probe import MISSING, OK, UNREADABLE
from lavis.datasets.check.tables import bad_examples, duplicates, probe_split


def _header(path: Path) -> list[str]:
    with open(path, encoding="utf-8", newline="") as handle:
        return next(csv.reader(handle), [])


def _group_counts(values: list[Any], row_image: np.ndarray, status: np.ndarray) -> dict[str, dict[str, int]]:
    """Per distinct value: rows, rows whose image reads, and the distinct images by status."""
    groups: dict[str, dict[str, int]] = {}
    column = np.asarray(["" if v is None else str(v) for v in values], dtype=object)
    row_ok = status[row_image] == OK
    for value in sorted(set(column.tolist())):
        rows = np.flatnonzero(column == value)
        images = np.unique(row_image[rows])
        codes = np.bincount(status[images], minlength=3)
        groups[value or "(empty)"] = {
            "rows": int(rows.size), "rows_with_readable_image": int(np.count_nonzero(row_ok[rows])),
            "images": int(images.size), "present": int(codes[OK] + codes[UNREADABLE]),
            "readable": int(codes[OK]), "missing": int(codes[MISSING]), "unreadable": int(codes[UNREADABLE]),
        }
    return groups


def write_readable_csv(table: pa.Table, keep: np.ndarray, path: Path) -> int:
    """The kept rows, every original column, quoted where needed, written atomically."""
    kept = table.filter(pa.array(keep))
    buffer = io.BytesIO()
    pv.write_csv(kept, buffer, pv.WriteOptions(quoting_style="needed"))
    atomic_write_bytes(path, buffer.getvalue())
    return kept.num_rows


def check_quilt1m(builder: Quilt1MBuilder, workers: int, out_dir: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(per CSV split, extra: per-subset counts and the readable-rows CSV)."""
    cfg = builder.cfg
    root = builder.root()
    path = data_file(root, cfg.annotation, f"datasets.{builder.name}.annotation")
    header = _header(path)
    required = ["image_path", "split", "subset", cfg.caption_field]
    table = read_csv(path, required, [c for c in header if c not in required])
    table = table.select(header)  # the file's own column order
    require_non_null(table, "image_path", str(path))
    images = root / cfg.image_dir
    check_under_root(table.column("image_path"), images, "image_path", lambda i: f"{path}: row {i + 1}")
    data = SplitTable(table.select(["image_path"]), images, str(path), "image_path")
    result, names, row_image = probe_split(data, workers, cfg.max_image_pixels, "quilt1m")
    row_ok = result.status[row_image] == OK

    per_split = _group_counts(table.column("split").to_pylist(), row_image, result.status)
    for value, entry in per_split.items():
        rows = table.filter(pc.fill_null(pc.equal(table.column("split"), value), False))
        entry["duplicate_rows"] = duplicates(rows, ["image_path", cfg.caption_field])
    readable_csv = out_dir / f"{path.stem}_readable.csv"
    kept = write_readable_csv(table, row_ok, readable_csv)
    extra = {
        "annotation": str(path),
        "image_folder": str(images),
        "rows": table.num_rows,
        "rows_with_empty_caption": int(pc.sum(blank(table.column(cfg.caption_field))).as_py() or 0),
        "images": result.counts(),
        "subsets": _group_counts(table.column("subset").to_pylist(), row_image, result.status),
        "examples": bad_examples(result, names),
        "readable_csv": {"path": str(readable_csv), "rows": kept,
                         "use": f"datasets.{builder.name}.annotation={readable_csv}"},
    }
    return per_split, extra
