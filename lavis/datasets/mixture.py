"""Several training sets mixed in one run with sampling ratios, as one map-style dataset.

Each epoch draws ``length`` samples (default: the sum of the parts' lengths); part ``k`` gets
``length * ratio_k / sum(ratios)`` of them (largest-remainder rounding), taken from a seeded
permutation of that part (repeated when the part is smaller than its share: upsampling), and the
whole table is shuffled. Everything depends only on ``(seed, epoch)``, so a DistributedSampler
over it, and a resume in the middle of an epoch, see exactly the same index -> item map.

``image_id`` must stay unique across the parts (ITC treats equal ids as positives): part ``k``'s
ids are shifted by the summed lengths of the parts before it (ids are dense below ``len``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from torch.utils.data import Dataset


class MixtureDataset(Dataset):
    def __init__(
        self,
        datasets: Sequence[Dataset],
        ratios: Sequence[float],
        seed: int = 0,
        length: int | None = None,
    ) -> None:
        if not datasets:
            raise ValueError("MixtureDataset needs at least one dataset")
        if len(ratios) != len(datasets):
            raise ValueError(f"got {len(datasets)} datasets but {len(ratios)} ratios")
        if any(not r > 0 for r in ratios):
            raise ValueError(f"sampling ratios must be > 0, got {list(ratios)}")
        sizes = [len(d) for d in datasets]  # type: ignore[arg-type]
        if any(size == 0 for size in sizes):
            raise ValueError(f"cannot mix an empty dataset (sizes {sizes})")
        self.datasets = list(datasets)
        self.sizes = sizes
        self.seed = seed
        self.length = int(length) if length is not None else sum(sizes)
        total = float(sum(ratios))
        self.shares = largest_remainder(self.length, [r / total for r in ratios])
        self.id_offsets = np.cumsum([0, *sizes[:-1]]).tolist()
        self.epoch: int | None = None
        self.set_epoch(0)

    def __len__(self) -> int:
        return self.length

    def set_epoch(self, epoch: int) -> None:
        """Redraw the index table for ``epoch`` (cheap to call again with the same epoch)."""
        if epoch == self.epoch:
            return
        self.epoch = epoch
        rng = np.random.default_rng([self.seed, epoch])
        parts, items = [], []
        for part, (size, share) in enumerate(zip(self.sizes, self.shares)):
            repeats = -(-share // size)  # ceil
            drawn = np.concatenate([rng.permutation(size) for _ in range(repeats)])[:share] if share else []
            parts.append(np.full(share, part, dtype=np.int32))
            items.append(np.asarray(drawn, dtype=np.int64))
        order = rng.permutation(self.length)
        self._part = np.concatenate(parts)[order]
        self._item = np.concatenate(items)[order]
        for dataset in self.datasets:
            if callable(getattr(dataset, "set_epoch", None)):
                dataset.set_epoch(epoch)

    def text_lengths(self, columns: Sequence[str] = ("text_input", "text_output")) -> np.ndarray | None:
        """Per index of the current epoch, its item's text length in its part (see
        ``SampleTable.text_lengths``); None when a part cannot tell without loading items."""
        out = np.zeros(self.length, dtype=np.int64)
        for part, dataset in enumerate(self.datasets):
            lengths = getattr(dataset, "text_lengths", None)
            lengths = lengths(columns) if callable(lengths) else None
            if lengths is None:
                return None
            rows = self._part == part
            out[rows] = np.asarray(lengths)[self._item[rows]]
        return out

    def locate(self, index: int) -> tuple[int, int]:
        """(part, item index in that part) for ``index`` in the current epoch."""
        return int(self._part[index]), int(self._item[index])

    def __getitem__(self, index: int) -> Any:
        part, item_index = self.locate(index)
        item = self.datasets[part][item_index]
        if isinstance(item, dict) and isinstance(item.get("image_id"), int):
            item = {**item, "image_id": item["image_id"] + self.id_offsets[part]}
        return item


def largest_remainder(total: int, fractions: Sequence[float]) -> list[int]:
    """Integer counts summing to ``total`` closest to ``total * fractions`` (ties: earlier first)."""
    exact = [total * f for f in fractions]
    counts = [int(x) for x in exact]
    order = sorted(range(len(fractions)), key=lambda k: (counts[k] - exact[k], k))
    for k in order[: total - sum(counts)]:
        counts[k] += 1
    return counts
