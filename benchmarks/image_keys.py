"""What keying cached features by image content costs: sha256 of every file the first time, one
``stat`` per file after that; and hashing every frozen encoder tensor in full.

    python -m benchmarks.image_keys --images 1000 --rounds 3

Contenders over the same ``--images`` JPEG tiles (512 px, quality 90, written by data_files):

- ``stat_only``: the previous key, sha256 of (path, size, mtime) after one stat per file (the
  baseline: it cannot see content changes);
- ``first_build``: :func:`lavis.datasets.image_hashes.image_keys` with no index yet (reads and
  hashes every file, writes the index);
- ``unchanged``: the same with the index present (one stat per file, nothing read).

The tiles were just written, so they are in the page cache: ``first_build`` measures hashing, not
the disk (on a cold network file system reading dominates). ``index`` times the index at Quilt-1M
scale (``--index-entries`` synthetic entries): loading it, looking every entry up, adding one.
``weights`` times :func:`lavis.common.tensor_digest.weights_digest` on fp16 linear layers and
projects EVA ViT-g (985,894,528 fp16 parameters).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import statistics
import time
from typing import Any

import torch

from benchmarks.data_files import write_tiles
from benchmarks.timing import command_line, emit, machine
from benchmarks.train_step import WORK

VIT_G_PARAMS = 985_894_528


def _stat_only(paths: list[str]) -> list[str]:
    keys = []
    for path in paths:
        st = os.stat(path)
        keys.append(hashlib.sha256(f"{path}\0{st.st_size}\0{st.st_mtime_ns}".encode()).hexdigest())
    return keys


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def index_at_scale(entries: int) -> dict[str, float]:
    from lavis.datasets.image_hashes import ImageHashIndex

    folder = WORK / f"hash_index_{entries}"
    shutil.rmtree(folder, ignore_errors=True)
    stamp = 1_700_000_000_000_000_000
    new = {f"/data/quilt_1m/{i:07d}.jpg": ((70_000 + i, stamp + i, stamp + i, 1_000 + i, 2049), f"{i:064x}")
           for i in range(entries)}
    write_s = _timed(lambda: ImageHashIndex(folder).add(new))
    start = time.perf_counter()
    index = ImageHashIndex(folder)
    load_s = time.perf_counter() - start
    lookup_s = _timed(lambda: [index.lookup(path, entry[0]) for path, entry in new.items()])
    add_one_s = _timed(lambda: index.add({"/data/new.jpg": ((1, 2, 3, 4, 5), "0" * 64)}))
    size = (folder / "image_hashes.arrow").stat().st_size
    shutil.rmtree(folder, ignore_errors=True)
    return {"entries": entries, "file_mb": size / 1e6, "first_write_s": write_s, "load_s": load_s,
            "lookup_all_s": lookup_s, "add_one_s": add_one_s}


def run(images: int = 1000, rounds: int = 3, weight_mb: int = 256, index_entries: int = 1_000_000) -> dict[str, Any]:
    import pyarrow as pa

    from lavis.common.tensor_digest import weights_digest
    from lavis.datasets.datasets.sample_table import SampleTable
    from lavis.datasets.image_hashes import ImageHashIndex, image_keys

    folder = WORK / f"tiles_{images}"
    names = write_tiles(folder, images)
    table = SampleTable(pa.table({"image_path": names, "text_input": [""] * images}), folder)
    paths = [str(folder / name) for name in names]
    total_bytes = sum(os.path.getsize(p) for p in paths)
    cache = WORK / "image_key_cache"
    seconds: dict[str, list[float]] = {"stat_only": [], "first_build": [], "unchanged": []}
    for _ in range(rounds):
        shutil.rmtree(cache, ignore_errors=True)
        seconds["stat_only"].append(_timed(lambda: _stat_only(paths)))
        seconds["first_build"].append(_timed(lambda: image_keys(table, names, ImageHashIndex(cache))))
        seconds["unchanged"].append(_timed(lambda: image_keys(table, names, ImageHashIndex(cache))))
    median = {name: statistics.median(values) for name, values in seconds.items()}

    layers = max(1, weight_mb * 2**20 // (4096 * 4096 * 2))
    module = torch.nn.Sequential(*(torch.nn.Linear(4096, 4096, bias=False) for _ in range(layers))).half()
    weight_bytes = sum(p.numel() * p.element_size() for p in module.parameters())
    weight_s = statistics.median(_timed(lambda: weights_digest([module])) for _ in range(rounds))
    return {
        "images": images, "mean_file_kb": total_bytes / images / 1024, "rounds": rounds,
        "seconds": seconds, "median_s": median,
        "ms_per_1000_images": {name: value / images * 1000 * 1000 for name, value in median.items()},
        "first_build_mb_per_s": total_bytes / 2**20 / median["first_build"],
        "unchanged_vs_stat_only": median["unchanged"] / median["stat_only"],
        "index": index_at_scale(index_entries) if index_entries else None,
        "weights": {"bytes": weight_bytes, "seconds": weight_s, "gb_per_s": weight_bytes / 1e9 / weight_s,
                    "eva_vit_g_fp16_projected_s": VIT_G_PARAMS * 2 / (weight_bytes / weight_s)},
        "machine": machine(),
    }


def main(argv: list[str] | None = None) -> None:
    parser = command_line(__doc__, rounds=3)
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--weight-mb", type=int, default=256)
    parser.add_argument("--index-entries", type=int, default=1_000_000, help="0 skips the index at scale")
    args = parser.parse_args(argv)
    emit(run(args.images, args.rounds, args.weight_mb, args.index_entries), args.out)


if __name__ == "__main__":
    main()
