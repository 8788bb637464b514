"""Tile pixels streamed by DataLoader workers: each worker opens the slide itself, reads a tile
from the planned level, shrinks it to the tile size and applies the model's image transform."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from lavis.apps.slides.plan import ReadPlan
from lavis.apps.slides.reader import SlideReader


def read_tile(reader: SlideReader, plan: ReadPlan, x: int, y: int) -> Image.Image:
    """The tile at level-0 (x, y) as a ``plan.tile`` x ``plan.tile`` RGB image."""
    image = reader.read(plan.level, x, y, plan.read_size, plan.read_size)
    if plan.read_size != plan.tile:
        image = image.resize((plan.tile, plan.tile), Image.Resampling.BICUBIC)
    return image


class TileDataset(Dataset):
    """Item ``i``: (tile number ``i``, the transformed pixels of tile ``i``)."""

    def __init__(self, reader: SlideReader, plan: ReadPlan, origins: np.ndarray, transform: Any) -> None:
        self.reader = reader
        self.plan = plan
        self.origins = origins
        self.transform = transform

    def __len__(self) -> int:
        return len(self.origins)

    def __getitem__(self, index: int) -> tuple[int, torch.Tensor]:
        x, y = (int(v) for v in self.origins[index])
        return index, self.transform(read_tile(self.reader, self.plan, x, y))


def _collate(items: list[tuple[int, torch.Tensor]]) -> tuple[list[int], torch.Tensor]:
    return [i for i, _ in items], torch.stack([t for _, t in items])


def tile_loader(dataset: TileDataset, batches: Sequence[Sequence[int]], workers: int,
                pin_memory: bool = False) -> DataLoader:
    """Batches of pixels in the order of ``batches`` (lists of tile numbers), read by ``workers``
    processes (0: in this process)."""
    return DataLoader(
        dataset, batch_sampler=[list(b) for b in batches], num_workers=workers, collate_fn=_collate,
        prefetch_factor=4 if workers > 0 else None, persistent_workers=False, pin_memory=pin_memory,
    )
