"""Quilt-1M lookup CSV + image folder -> webdataset tar shards for streaming training.

    python -m lavis.datasets.tools.make_shards --csv quilt_1M_lookup.csv --images quilt_1m \\
        --out shards/ [--shard-size 5000] [--split train] [--subsets quilt openpath] [--verify]

Shards use the standard webdataset layout, readable by ``webdataset.WebDataset`` unchanged: per
sample ``<key>.jpg`` (the original image bytes, under their own extension when not a JPEG),
``<key>.txt`` (the caption, from ``--caption-field``) and ``<key>.json`` (the CSV row plus
``image_id``, dense per unique image over the selected rows, and ``row``, the 1-based CSV row,
which is also the key). Every shard but the last holds ``--shard-size`` samples. Rows are
shuffled once (``--shuffle-seed``; negative keeps CSV order) so that one image's captions do not
sit side by side. Missing images (or undecodable ones with ``--verify``) are left out and listed
in ``shards.json`` with the reason, beside the sample count of every shard.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from lavis.common.checkpoint import atomic_write_text
from lavis.common.path_rules import check_under_root
from lavis.datasets.annotations import ROW
from lavis.datasets.bad_data import SkippedSample
from lavis.datasets.builders.quilt1m import Quilt1MFilter, read_lookup
from lavis.datasets.builders.table_builder import SplitTable, with_image_ids
from lavis.datasets.image_io import load_image_bytes
from lavis.datasets.shards import IMAGE_EXTENSIONS, MANIFEST, AtomicShardWriter

logger = logging.getLogger("make_shards")
_ROWS_IN_MEMORY = 10_000  # CSV rows turned into dicts at a time (1M at once would take gigabytes)


def select_rows(csv: Path, images: Path, rules: Quilt1MFilter, split: str | None, seed: int) -> pa.Table:
    table = read_lookup(csv, rules, all_columns=True)
    if split is not None:
        table = table.filter(pc.equal(table.column("split"), split))
    check_under_root(table.column("image_path"), images, "image_path", SplitTable(table, images, str(csv)).where)
    table = with_image_ids(table)
    table = table.rename_columns(["row" if c == ROW else c for c in table.column_names])
    if seed >= 0:
        table = table.take(np.random.default_rng(seed).permutation(table.num_rows))
    return table


def _read(path: Path) -> bytes | str:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return "file not found"
    except OSError as err:
        return f"unreadable file ({err})"


def _samples(
    rows: list[dict[str, Any]], images: Path, caption_field: str, verify: bool, workers: int,
    skipped: list[dict[str, Any]],
) -> Iterator[tuple[str, dict[str, bytes]]]:
    """(key, members) for every row whose image can be read, in row order."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for row, data in zip(rows, pool.map(lambda r: _read(images / r["image_path"]), rows)):
            if isinstance(data, bytes) and verify:
                checked = load_image_bytes(data, row["image_path"])
                data = checked.reason if isinstance(checked, SkippedSample) else data
            if isinstance(data, str):
                skipped.append({"row": row["row"], "image_path": row["image_path"], "reason": data})
                continue
            ext = Path(row["image_path"]).suffix.lower().lstrip(".")
            ext = ext if ext in IMAGE_EXTENSIONS else "jpg"
            members = {ext: data, "txt": str(row[caption_field]).encode(), "json": json.dumps(row, ensure_ascii=False).encode()}
            yield f"{row['row']:09d}", members


def make_shards(
    csv: Path,
    images: Path,
    out: Path,
    rules: Quilt1MFilter,
    shard_size: int = 5000,
    split: str | None = None,
    seed: int = 0,
    verify: bool = False,
    workers: int = 8,
    prefix: str = "quilt1m",
) -> dict[str, Any]:
    """Write the shards and ``shards.json``; return the manifest."""
    if shard_size <= 0:
        raise ValueError(f"--shard-size must be > 0, got {shard_size}")
    table = select_rows(csv, images, rules, split, seed)
    out.mkdir(parents=True, exist_ok=True)
    skipped: list[dict[str, Any]] = []
    digits = max(6, len(str(math.ceil(table.num_rows / shard_size))))
    writer = AtomicShardWriter(out / f"{prefix}-%0{digits}d.tar", shard_size)
    for start in range(0, table.num_rows, _ROWS_IN_MEMORY):
        rows = table.slice(start, _ROWS_IN_MEMORY).to_pylist()
        for key, members in _samples(rows, images, rules.caption_field, verify, workers, skipped):
            writer.write(key, members)
    writer.close()
    shards = [{"name": name, "samples": count} for name, count in writer.counts]
    logger.info("%d shard(s): %s", len(shards), shards[:3])
    manifest = {
        "csv": str(csv),
        "split": split,
        "caption_field": rules.caption_field,
        "rows": table.num_rows,
        "samples": sum(s["samples"] for s in shards),
        "shards": shards,
        "skipped": skipped,
    }
    atomic_write_text(out / MANIFEST, json.dumps(manifest, indent=1))
    if skipped:
        logger.warning("%d row(s) left out (see %s), first: %s", len(skipped), out / MANIFEST, skipped[:3])
    return manifest


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--csv", type=Path, required=True, help="quilt_1M_lookup.csv")
    parser.add_argument("--images", type=Path, required=True, help="folder the CSV's image_path is relative to")
    parser.add_argument("--out", type=Path, required=True, help="output folder for the .tar shards")
    parser.add_argument("--shard-size", type=int, default=5000, help="samples per shard")
    parser.add_argument("--split", default=None, help="keep rows with this 'split' value (e.g. train)")
    parser.add_argument("--subsets", nargs="*", default=[], help="keep these 'subset' values")
    parser.add_argument("--pathology", nargs="*", default=[], help="keep rows mentioning these pathologies")
    parser.add_argument("--caption-field", default="caption", choices=["caption", "corrected_text"])
    parser.add_argument("--shuffle-seed", type=int, default=0, help="row shuffle seed; negative keeps CSV order")
    parser.add_argument("--verify", action="store_true", help="decode every image and leave out bad ones")
    parser.add_argument("--workers", type=int, default=8, help="threads reading image files")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    args = parse_args(argv)
    rules = Quilt1MFilter(caption_field=args.caption_field, subsets=args.subsets, pathology=args.pathology)
    manifest = make_shards(
        args.csv, args.images, args.out, rules, args.shard_size, args.split, args.shuffle_seed, args.verify, args.workers
    )
    print(f"{manifest['samples']} samples in {len(manifest['shards'])} shard(s) under {args.out}; "
          f"{len(manifest['skipped'])} left out")


if __name__ == "__main__":
    main()
