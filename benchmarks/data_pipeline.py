"""Data pipeline throughput: images/s out of webdataset shards (the ``quilt1m_wds`` builder,
``make_shards`` output) through the training transform, DataLoader workers and the collate.

    python -m benchmarks.data_pipeline --images 256 --workers 2 --batch 32

Each round is one full pass over the shards with fresh workers (their start-up is counted, as
the runner restarts them each epoch for streams).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks.data_files import write_quilt_csv, write_tiles
from benchmarks.timing import command_line, emit
from benchmarks.train_step import WORK


def make_shard_set(root: Path, images: int, side: int, shard_size: int) -> Path:
    from lavis.datasets.builders.quilt1m import Quilt1MFilter
    from lavis.datasets.tools.make_shards import make_shards

    names = write_tiles(root / "quilt_1m", images, side)
    shards = root / "shards"
    if not (shards / "shards.json").exists() or json.loads((shards / "shards.json").read_text())["samples"] != images:
        make_shards(write_quilt_csv(root, names), root / "quilt_1m", shards, Quilt1MFilter(), shard_size=shard_size)
    return root


def run(images: int = 256, side: int = 512, workers: int = 2, batch: int = 32, rounds: int = 3,
        image_size: int = 224, shard_size: int = 32) -> dict[str, Any]:
    from torch.utils.data import DataLoader

    from lavis.datasets import BUILDERS, collate

    torch.set_num_threads(1)
    root = make_shard_set(WORK / f"shards_{images}_{side}", images, side, shard_size)
    section = {
        "storage": str(root), "shuffle_buffer": 64,
        "vis_processor": {"train": {"name": "pathology_image_train", "image_size": image_size}},
        "text_processor": {"train": {"name": "pathology_caption"}},
    }
    stream = BUILDERS.get("quilt1m_wds").from_config(section, "quilt1m_wds").build()["train"]
    rates, seen = [], 0
    for epoch in range(rounds):
        stream.set_epoch(epoch)
        loader = DataLoader(stream, batch_size=batch, num_workers=workers, collate_fn=collate)
        start = time.perf_counter()
        seen = sum(b["_size"] for b in loader)
        rates.append(seen / (time.perf_counter() - start))
    rates_sorted = sorted(rates)
    return {
        "images": images, "source_side_px": side, "image_size": image_size, "workers": workers, "batch": batch,
        "shards": len(list((root / "shards").glob("*.tar"))), "images_per_pass": seen,
        "images_per_s": rates, "median": rates_sorted[len(rates) // 2],
    }


def main(argv: list[str] | None = None) -> None:
    parser = command_line(__doc__, batch=32, rounds=3)
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--side", type=int, default=512, help="stored JPEG size in pixels")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    emit(run(args.images, args.side, args.workers, args.batch, args.rounds), args.out)


if __name__ == "__main__":
    main()
