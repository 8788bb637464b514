"""Data loading for the runners: resumable distributed sampling and per-item seeding.

Exact resume needs three things: the sampler's order depends only on (seed, epoch); a resumed
epoch starts at the sample where the checkpoint was taken; and any randomness inside an item
(augmentation) depends only on (seed, epoch, index) - not on which worker loaded it or how many
items that worker loaded before. ``SeededItems`` gives the last, and also makes runs independent
of ``num_workers``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, Sampler

from lavis.common.seeding import seeded
from lavis.datasets.bad_data import SkippedSample
from lavis.runners.length_grouping import Arrange
from lavis.runners.stop_signals import ignore_stop_signals


def item_seed(seed: int, epoch: int, index: int) -> int:
    """A well-mixed 63-bit seed per (run seed, epoch, item); stable across platforms."""
    x = (seed * 1_000_003 + epoch) * 2_654_435_761 + index
    x ^= x >> 33
    x = (x * 0xFF51AFD7ED558CCD) & 0xFFFFFFFFFFFFFFFF
    x ^= x >> 33
    return x & 0x7FFFFFFFFFFFFFFF


class SeededItems(Dataset):
    """Wraps a map-style dataset; the sampler passes ``(epoch, index)``.

    Each item is produced under RNGs seeded from (seed, epoch, index), tagged with ``_index``,
    and the inner dataset sees ``set_epoch`` even inside persistent workers.
    """

    def __init__(self, dataset: Dataset, seed: int) -> None:
        self.dataset = dataset
        self.seed = seed
        self._epoch: int | None = None

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int] | int) -> Any:
        epoch, index = key if isinstance(key, tuple) else (0, key)
        if epoch != self._epoch:
            set_epoch = getattr(self.dataset, "set_epoch", None)
            if callable(set_epoch):
                set_epoch(epoch)
            self._epoch = epoch
        with seeded(item_seed(self.seed, epoch, index)):
            item = self.dataset[index]
        if isinstance(item, dict):
            item = {**item, "_index": index}
        elif isinstance(item, SkippedSample):
            item = dataclasses.replace(item, index=index)
        return item


class ResumableDistributedSampler(Sampler):
    """DistributedSampler semantics (pad by repeating, interleave by rank) that can start mid-epoch.

    Yields ``(epoch, index)`` for :class:`SeededItems`. The permutation depends only on
    (seed, epoch), so 1 process with batch B*W sees the same global batches as W processes with B.
    ``arrange`` (see :mod:`lavis.runners.length_grouping`) reorders the epoch's permutation
    before padding and interleaving, e.g. into length-grouped global batches.
    """

    def __init__(
        self,
        size: int,
        num_replicas: int = 1,
        rank: int = 0,
        shuffle: bool = True,
        seed: int = 0,
        arrange: Arrange | None = None,
    ) -> None:
        if size <= 0:
            raise ValueError("cannot sample from an empty dataset")
        self.size = size
        self.num_replicas = num_replicas
        self.rank = rank
        self.shuffle = shuffle
        self.seed = seed
        self.arrange = arrange
        self.epoch = 0
        self.start = 0
        self.num_samples = math.ceil(size / num_replicas)

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Select the epoch's order; skip this rank's first ``start`` samples (resume)."""
        self.epoch = epoch
        self.start = start

    def global_order(self, epoch: int | None = None) -> list[int]:
        """The epoch's order over all ranks, arranged and padded (rank r takes every W-th from r)."""
        epoch = self.epoch if epoch is None else epoch
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed + epoch)
            order = torch.randperm(self.size, generator=generator).tolist()
        else:
            order = list(range(self.size))
        if self.arrange is not None:
            order = self.arrange(order, epoch)
            if len(order) != self.size:
                raise ValueError(f"arrange returned {len(order)} indices for {self.size} samples")
        total = self.num_samples * self.num_replicas
        return order + (order * math.ceil(total / len(order)))[: total - len(order)]

    def indices(self) -> list[int]:
        return self.global_order()[self.rank :: self.num_replicas]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return ((self.epoch, i) for i in self.indices()[self.start :])

    def __len__(self) -> int:
        return self.num_samples - self.start


def iterable_skips(batches_done: int, batch_size: int, num_workers: int) -> list[int]:
    """Samples each DataLoader worker already produced after ``batches_done`` batches.

    DataLoader hands batch ``i`` to worker ``i % num_workers`` (in-order), so worker ``w`` made
    ``ceil((batches_done - w) / num_workers)`` batches of ``batch_size`` samples each.
    """
    workers = max(1, num_workers)
    return [max(0, math.ceil((batches_done - w) / workers)) * batch_size for w in range(workers)]


def build_loader(
    dataset: Dataset,
    *,
    batch_size: int,
    num_workers: int,
    collate_fn: Any,
    seed: int,
    rank: int,
    world_size: int,
    shuffle: bool,
    pin_memory: bool,
    persistent_workers: bool = False,
    arrange: Arrange | None = None,
) -> tuple[DataLoader, ResumableDistributedSampler | None]:
    """A loader (and its sampler) for a map-style or iterable dataset; ``arrange`` orders a
    map-style epoch (length grouping, sorted evaluation).

    ``persistent_workers`` keeps a map-style loader's workers alive between passes: worth it for
    the train loader, which is iterated every epoch, not for a loader used once.
    """
    generator = torch.Generator().manual_seed(seed)  # keeps the global RNG untouched
    if isinstance(dataset, IterableDataset):
        loader = DataLoader(
            dataset,
            batch_size=batch_size,
            num_workers=num_workers,
            collate_fn=collate_fn,
            pin_memory=pin_memory,
            generator=generator,
            worker_init_fn=ignore_stop_signals,
        )
        return loader, None
    sampler = ResumableDistributedSampler(
        len(dataset), world_size, rank, shuffle=shuffle, seed=seed, arrange=arrange  # type: ignore[arg-type]
    )
    loader = DataLoader(
        SeededItems(dataset, seed),
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        collate_fn=collate_fn,
        pin_memory=pin_memory,
        persistent_workers=persistent_workers and num_workers > 0,
        prefetch_factor=4 if num_workers > 0 else None,
        generator=generator,
        worker_init_fn=ignore_stop_signals,  # the main process finishes the step on SIGTERM / Ctrl-C
    )
    return loader, sampler
