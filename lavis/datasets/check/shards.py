"""Completeness of webdataset shards (``quilt1m_wds``): every sample's image decoded, per shard.

Shards are read in DataLoader workers, one shard per item; a shard that ends early (a truncated
copy) is reported with the samples read before the fault.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from lavis.datasets.bad_data import SkippedSample
from lavis.datasets.check.tables import EXAMPLES
from lavis.datasets.image_io import load_image_bytes
from lavis.datasets.shards import ShardReadError, image_member, iter_shard


def _image_path(sample: dict[str, Any]) -> str:
    """`` (<image_path>)`` from the sample's CSV row, so a report names the original file."""
    try:
        return f" ({json.loads(sample['json'])['image_path']})"
    except (KeyError, TypeError, ValueError):
        return ""


class _Shards(Dataset):
    def __init__(self, shards: list[str], max_pixels: int) -> None:
        self.shards, self.max_pixels = shards, max_pixels

    def __len__(self) -> int:
        return len(self.shards)

    def __getitem__(self, index: int) -> dict[str, Any]:
        path = self.shards[index]
        counts = {"samples": 0, "readable": 0, "missing": 0, "unreadable": 0}
        bad: list[str] = []
        error = None
        try:
            for sample in iter_shard(path):
                counts["samples"] += 1
                ext = image_member(sample)
                name = f"{Path(path).name}/{sample['__key__']}{_image_path(sample)}"
                if ext is None:
                    counts["missing"] += 1
                    bad.append(f"{name}: no image member")
                    continue
                result = load_image_bytes(sample[ext], name, max_pixels=self.max_pixels)
                if isinstance(result, SkippedSample):
                    counts["unreadable"] += 1
                    bad.append(str(result))
                else:
                    counts["readable"] += 1
        except ShardReadError as err:
            error = err.reason
        return {"shard": Path(path).name, **counts, "error": error, "examples": bad[:EXAMPLES]}


def check_shards(shards: list[str], workers: int, max_pixels: int) -> dict[str, Any]:
    """One ``train`` entry with totals, per-shard counts and the shards that are broken."""
    loader = DataLoader(_Shards(shards, max_pixels), batch_size=None, num_workers=workers)
    per_shard = []
    for entry in tqdm(loader, total=len(shards), desc="shards", unit="shard", mininterval=1.0):
        per_shard.append(entry)
    totals = {key: sum(s[key] for s in per_shard) for key in ("samples", "readable", "missing", "unreadable")}
    return {
        "rows": totals["samples"], "images": totals["samples"], **totals,
        "present": totals["readable"] + totals["unreadable"],
        "rows_with_readable_image": totals["readable"],
        "broken_shards": [{"shard": s["shard"], "error": s["error"], "samples_read": s["samples"]}
                          for s in per_shard if s["error"]],
        "examples": {"missing": [], "unreadable": [e for s in per_shard for e in s["examples"]][:EXAMPLES]},
        "shards": per_shard,
    }
