"""The data of a run: the splits (through the feature cache where it applies), the train set
(a mixture when several data sets train), loaders, the resumable position in an epoch and the
per-batch loss weights of length-grouped batches."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset

from lavis.common.errors import ConfigError, DataError
from lavis.common.output_lock import lock_output_for_job
from lavis.common.paths import feature_cache_root
from lavis.common.schema import suggest
from lavis.runners.data import ResumableDistributedSampler, build_loader, iterable_skips
from lavis.runners.length_grouping import Arrange, LengthGrouping, eval_arrangement, train_arrangement


def with_feature_cache(datasets: dict[str, dict[str, Dataset]], model: torch.nn.Module, cfg: Any,
                       output_dir: Path, device: torch.device) -> dict[str, dict[str, Dataset]]:
    """Splits with a fixed image transform read frozen-encoder features from disk (``run.feature_cache``)."""
    from lavis.datasets.feature_cache import apply_feature_cache, model_problem

    run = cfg.run
    if run.feature_cache == "off" or model_problem(model):
        return apply_feature_cache(datasets, model, cfg, output_dir, device)
    # The cache folder may be shared by several runs: one of them fills it at a time.
    with lock_output_for_job(feature_cache_root(run, output_dir), "feature-cache build"):
        return apply_feature_cache(datasets, model, cfg, output_dir, device)


class RunData:
    def __init__(self, cfg: Any, task: Any, datasets: dict[str, dict[str, Dataset]], rank: int, world_size: int,
                 device: torch.device) -> None:
        self.cfg, self.run, self.task = cfg, cfg.run, task
        self.datasets = datasets
        self.rank, self.world_size, self.device = rank, world_size, device
        self.train_loader: DataLoader | None = None
        self.train_sampler: ResumableDistributedSampler | None = None
        self.streaming = False
        self._batch_weights: tuple[int, Any] | None = None  # (epoch, loss weight per batch) when grouped
        self.check_eval_splits()

    def check_eval_splits(self) -> None:
        """Every split in run.valid_splits / run.test_splits exists and holds items: an evaluation
        of nothing is an error at start, not an exit 0 with empty results."""
        available = {name: sorted(splits) for name, splits in self.datasets.items()}
        known = sorted({split for splits in available.values() for split in splits})
        for key in ("valid_splits", "test_splits"):
            for split in getattr(self.run, key):
                found = [(name, splits[split]) for name, splits in self.datasets.items() if split in splits]
                if not found:
                    raise ConfigError(
                        f"run.{key}: no data set has a split '{split}'; available: {available}.{suggest(split, known)}"
                    )
                for name, dataset in found:
                    if not isinstance(dataset, IterableDataset) and len(dataset) == 0:
                        raise DataError(f"datasets.{name}: split '{split}' (run.{key}) has no items: nothing to evaluate")

    # ---- the train set ---------------------------------------------------------------------
    def train_dataset(self) -> Dataset:
        parts, ratios = [], []
        for name, splits in self.datasets.items():
            for split in self.run.train_splits:
                if split in splits:
                    if not isinstance(splits[split], IterableDataset) and len(splits[split]) == 0:
                        raise DataError(f"datasets.{name}: split '{split}' (run.train_splits) has no items to train on")
                    parts.append(splits[split])
                    ratios.append(float(getattr(self.cfg.datasets.get(name), "sample_ratio", 1.0) or 1.0))
        if not parts:
            raise ConfigError(
                f"no dataset has a split in run.train_splits={self.run.train_splits}; "
                f"available: { {n: sorted(s) for n, s in self.datasets.items()} }"
            )
        if len(parts) == 1:
            return parts[0]
        from lavis.datasets.mixture import MixtureDataset

        return MixtureDataset(parts, ratios, seed=self.run.seed)

    def build_train_loader(self) -> None:
        dataset = self.train_dataset()
        self.train_loader, self.train_sampler = self.loader(dataset, train=True)
        self.streaming = isinstance(dataset, IterableDataset)

    def train_size(self) -> int | None:
        return self.train_sampler.size if self.train_sampler is not None else None

    # ---- loaders -----------------------------------------------------------------------------
    def arrangement(self, dataset: Dataset, train: bool) -> Arrange | None:
        """Length-grouped training batches (``run.group_by_length``, default from the task) or
        evaluation sorted by prompt length (``run.eval_sort_by_length``), if the data allow it."""
        if isinstance(dataset, IterableDataset):
            return None
        if train:
            grouped = self.run.group_by_length
            if grouped is None:
                grouped = self.task.group_by_length
            if not grouped:
                return None
            group = self.run.batch_size_train * self.world_size  # one global batch
            return train_arrangement(dataset, group, self.run.length_group_megabatch, self.run.seed,
                                     self.run.length_group_tolerance)
        if not self.run.eval_sort_by_length:
            return None
        return eval_arrangement(dataset, self.task.eval_group_column())

    def loader(self, dataset: Dataset, train: bool) -> tuple[DataLoader, ResumableDistributedSampler | None]:
        from lavis.datasets.collate import collate

        return build_loader(
            dataset,
            batch_size=self.run.batch_size_train if train else self.run.batch_size_eval,
            num_workers=self.run.num_workers,
            collate_fn=collate,
            seed=self.run.seed,
            rank=self.rank,
            world_size=self.world_size,
            shuffle=train,
            pin_memory=self.device.type == "cuda",
            persistent_workers=train,  # eval loaders are built per validation: no idle workers kept
            arrange=self.arrangement(dataset, train),
        )

    # ---- position in an epoch ------------------------------------------------------------------
    def position(self, epoch: int, batches_done: int) -> None:
        """Point the train loader at batch ``batches_done`` of ``epoch``."""
        if self.train_sampler is not None:
            self.train_sampler.set_epoch(epoch, start=batches_done * self.run.batch_size_train)
            return
        dataset = self.train_loader.dataset
        if hasattr(dataset, "set_epoch"):
            dataset.set_epoch(epoch)
        if hasattr(dataset, "set_skip"):
            dataset.set_skip(iterable_skips(batches_done, self.run.batch_size_train, self.run.num_workers))

    def batches_per_epoch(self) -> int | None:
        if self.train_sampler is not None:
            return math.ceil(self.train_sampler.num_samples / self.run.batch_size_train)
        return None

    def steps_per_epoch(self) -> int | None:
        """Optimizer steps in one pass over the train set (None for streaming data)."""
        batches = self.batches_per_epoch()
        return None if batches is None else math.ceil(batches / self.run.accum_grad_iters)

    def loss_weight(self, epoch: int, batch: int) -> float:
        """Length-grouped batches: batch ``batch``'s share of answer text, so that its mean loss
        weighs every answer token as random batches do (``run.length_group_loss_weights``)."""
        grouping = getattr(self.train_sampler, "arrange", None)
        if not isinstance(grouping, LengthGrouping) or not self.run.length_group_loss_weights:
            return 1.0
        if self._batch_weights is None or self._batch_weights[0] != epoch:
            order = self.train_sampler.global_order(epoch)
            self._batch_weights = (epoch, grouping.batch_weights(order, epoch))
        return float(self._batch_weights[1][batch])
