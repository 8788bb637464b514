"""Shared machinery of the training loops: setup, one micro-step, evaluation, checkpoints.

Epoch- and iteration-based runners differ only in how they walk the data (runner_epoch.py,
runner_iter.py). Everything a reader needs to follow one optimizer step is in ``micro_step``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import sys
import time
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.distributed as torch_dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import Dataset, IterableDataset
from tqdm import tqdm

from lavis.common import checkpoint as ckpt
from lavis.common.batch import batch_size_of, move_to_device, pop_bookkeeping
from lavis.common.dist import (
    all_gather_object,
    broadcast_object,
    get_rank,
    get_world_size,
    is_dist,
    is_main_process,
    resolve_device,
)
from lavis.common.errors import CheckpointError, ConfigError, DataError
from lavis.common.logger import JsonlWriter, git_revision
from lavis.common.optim import LR_SCHEDULERS, build_adamw
from lavis.common.output_lock import OutputFolderError, lock_output_for_job
from lavis.common.paths import REPO_ROOT, feature_cache_root, run_output_dir
from lavis.common.registry import Registry
from lavis.common.schema import suggest
from lavis.runners.checkpointing import (
    checkpoint_bytes,
    data_position,
    read_for_resume,
    room_problem,
    write_step_checkpoint,
)
from lavis.runners.data import build_loader, iterable_skips
from lavis.runners.eval_coverage import account_for_every_item, merge_ranks
from lavis.runners.length_grouping import Arrange, LengthGrouping, eval_arrangement, train_arrangement
from lavis.runners.stop_signals import EXIT_STOPPED, StopSignals, TrainingStopped

logger = logging.getLogger(__name__)

_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


class RunnerBase:
    """Owns the model, optimizer, scheduler, data loaders and checkpoints of one run."""

    name: ClassVar[str] = "base"

    def __init__(self, cfg: Any, task: Any, model: torch.nn.Module, datasets: dict[str, dict[str, Dataset]]):
        self.cfg = cfg
        self.run = cfg.run
        self.task = task
        self.rank = get_rank()
        self.world_size = get_world_size()
        self.device = resolve_device(self.run.device, "run.device")
        self.amp_dtype = _DTYPES[self.run.precision]
        self.output_dir = run_output_dir(cfg)
        self.ckpt_dir = self.output_dir / "checkpoints"
        self.best_mode = self.run.best_mode or task.best_mode

        if self.run.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
            torch.backends.cudnn.benchmark = False
        self.model = model.to(self.device)
        # Splits with a fixed image transform read frozen-encoder features from disk (run.feature_cache).
        self.datasets = self._with_feature_cache(datasets)
        self._check_eval_splits()
        self.wrapped: torch.nn.Module = self.model
        if is_dist() and not self.run.evaluate:
            self.wrapped = DistributedDataParallel(
                self.model,
                device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=self.run.find_unused_parameters,
            )

        # training state (restored by resume)
        self.epoch = 0  # data epoch the next batch comes from
        self.batches_done = 0  # micro-batches consumed in that epoch
        self.global_step = 0  # optimizer steps taken
        self.best: dict[str, Any] | None = None
        self._bad_count = 0
        self._bad_examples: list[str] = []
        self._loss_sums: dict[str, torch.Tensor] = {}
        self._loss_count = 0
        self._last_batch: dict[str, Any] | None = None
        self._batch_weights: tuple[int, Any] | None = None  # (epoch, loss weight per batch) when grouped
        self.writer = JsonlWriter(
            self.output_dir / "metrics.jsonl",
            self.output_dir / "tensorboard" if self.run.tensorboard else None,
        )
        self.stop_signals = StopSignals()  # installed around train() by the command line (lavis/cli/run.py)
        if not self.run.evaluate:
            self._check_room_for_a_checkpoint()
        self._write_run_info()

    def _with_feature_cache(self, datasets: dict[str, dict[str, Dataset]]) -> dict[str, dict[str, Dataset]]:
        from lavis.datasets.feature_cache import apply_feature_cache, model_problem

        if self.run.feature_cache == "off" or model_problem(self.model):
            return apply_feature_cache(datasets, self.model, self.cfg, self.output_dir, self.device)
        # The cache folder may be shared by several runs: one of them fills it at a time.
        with lock_output_for_job(feature_cache_root(self.run, self.output_dir), "feature-cache build"):
            return apply_feature_cache(datasets, self.model, self.cfg, self.output_dir, self.device)

    def _check_eval_splits(self) -> None:
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

    def _check_room_for_a_checkpoint(self) -> None:
        problem = None
        if is_main_process():
            self.output_dir.mkdir(parents=True, exist_ok=True)
            problem = room_problem(self.output_dir, checkpoint_bytes(self.model))
        problem = broadcast_object(problem)
        if problem:
            raise OutputFolderError(problem)

    # ---- run folder --------------------------------------------------------------------
    def _write_run_info(self) -> None:
        if not is_main_process():
            return
        self.output_dir.mkdir(parents=True, exist_ok=True)
        ckpt.atomic_write_text(self.output_dir / "config.yaml", self.cfg.to_yaml())
        info = {
            "argv": sys.argv,
            "cwd": os.getcwd(),  # relative paths in config.yaml are relative to it
            "source_config": self.cfg.source,
            "git": git_revision(REPO_ROOT),
            "world_size": self.world_size,
            "device": str(self.device),
            "torch": torch.__version__,
            "trainable_params": self.model.num_parameters(trainable=True),
            "frozen_params": self.model.num_parameters(trainable=False),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }
        ckpt.atomic_write_text(self.output_dir / "run_info.json", json.dumps(info, indent=2))

    # ---- data --------------------------------------------------------------------------
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

    def _arrangement(self, dataset: Dataset, train: bool) -> Arrange | None:
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

    def _loader(self, dataset: Dataset, train: bool):
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
            arrange=self._arrangement(dataset, train),
        )

    def _position_loader(self) -> None:
        """Point the train loader at (self.epoch, self.batches_done)."""
        if self.train_sampler is not None:
            self.train_sampler.set_epoch(self.epoch, start=self.batches_done * self.run.batch_size_train)
        else:
            dataset = self.train_loader.dataset
            if hasattr(dataset, "set_epoch"):
                dataset.set_epoch(self.epoch)
            if hasattr(dataset, "set_skip"):
                dataset.set_skip(iterable_skips(self.batches_done, self.run.batch_size_train, self.run.num_workers))

    def batches_per_epoch(self) -> int | None:
        if self.train_sampler is not None:
            return math.ceil(self.train_sampler.num_samples / self.run.batch_size_train)
        return None

    def steps_per_epoch(self) -> int | None:
        """Optimizer steps in one pass over the train set (None for streaming data)."""
        batches = self.batches_per_epoch()
        return None if batches is None else math.ceil(batches / self.run.accum_grad_iters)

    # ---- setup for training ----------------------------------------------------------------
    def setup_training(self, total_steps: int) -> None:
        self.optimizer = build_adamw(
            self.model,
            lr=self.run.init_lr,
            weight_decay=self.run.weight_decay,
            betas=tuple(self.run.betas),
            lr_scales=self.run.lr_scales,
        )
        # The optimizer holds exactly these; built once (on the unwrapped model, not DDP's wrapper).
        self._trainable = [p for _, p in self.model.trainable_named_parameters()]
        self.scheduler = LR_SCHEDULERS.get(self.run.lr_sched)(
            self.optimizer,
            init_lr=self.run.init_lr,
            min_lr=self.run.min_lr,
            warmup_lr=self.run.warmup_lr,
            warmup_steps=self.run.warmup_steps,
            total_steps=total_steps,
            steps_per_epoch=self.steps_per_epoch() or 1,
            decay_rate=self.run.lr_decay_rate,
        )
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.run.precision == "fp16")
        self.optimizer.zero_grad(set_to_none=True)
        self.maybe_resume()

    def build_train_loader(self) -> None:
        dataset = self.train_dataset()
        self.train_loader, self.train_sampler = self._loader(dataset, train=True)
        self.streaming = isinstance(dataset, IterableDataset)

    # ---- one micro-batch ---------------------------------------------------------------------
    def micro_step(self, batch: dict[str, Any], batches_in_epoch: int | None) -> bool:
        """Forward/backward one micro-batch; step the optimizer at accumulation boundaries.

        Returns True when an optimizer step was taken.
        """
        inputs, meta = pop_bookkeeping(batch)
        self._count_bad(meta.get("_skipped") or [])
        self.batches_done += 1
        update = self._is_update(batches_in_epoch)
        weight = 1.0
        if batch_size_of(inputs, meta) == 0:
            # Every item was unreadable. With DDP all ranks must still run backward: replay the
            # last good batch with zero weight. Alone, just skip the micro-batch.
            if not is_dist():
                return self._maybe_update(update, batches_in_epoch, skipped=True)
            if self._last_batch is None:
                raise DataError(f"rank {self.rank}: the first batch had no readable sample: {meta.get('_skipped')}")
            inputs, weight = self._last_batch, 0.0
        inputs = move_to_device(inputs, self.device)
        self._last_batch = inputs
        accum = self.run.accum_grad_iters
        sync = contextlib.nullcontext()
        if isinstance(self.wrapped, DistributedDataParallel) and not update:
            sync = self.wrapped.no_sync()
        with sync:
            with self.model.autocast(self.amp_dtype):
                losses = self.task.train_step(self.wrapped, inputs)
            loss = losses["loss"] * (weight * self._batch_loss_weight() / accum)
            self.scaler.scale(loss).backward()
        if weight:
            for key, value in losses.items():
                if isinstance(value, torch.Tensor) and value.ndim == 0:
                    self._loss_sums[key] = self._loss_sums.get(key, 0) + value.detach().float()
            self._loss_count += 1
        return self._maybe_update(update, batches_in_epoch)

    def _batch_loss_weight(self) -> float:
        """Length-grouped batches: the current batch's share of answer text, so that its mean loss
        weighs every answer token as random batches do (``run.length_group_loss_weights``)."""
        grouping = getattr(getattr(self, "train_sampler", None), "arrange", None)
        if not isinstance(grouping, LengthGrouping) or not self.run.length_group_loss_weights:
            return 1.0
        if self._batch_weights is None or self._batch_weights[0] != self.epoch:
            order = self.train_sampler.global_order(self.epoch)
            self._batch_weights = (self.epoch, grouping.batch_weights(order, self.epoch))
        return float(self._batch_weights[1][self.batches_done - 1])

    def _is_update(self, batches_in_epoch: int | None) -> bool:
        at_end = batches_in_epoch is not None and self.batches_done >= batches_in_epoch
        return self.batches_done % self.run.accum_grad_iters == 0 or at_end

    def _maybe_update(self, update: bool, batches_in_epoch: int | None, skipped: bool = False) -> bool:
        if not update:
            return False
        if skipped and not any(p.grad is not None for p in self._trainable):
            return False
        if self.run.max_grad_norm is not None:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self._trainable, self.run.max_grad_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        self.global_step += 1
        if self.global_step % self.run.log_freq == 0:
            self.log_train()
        every = self.run.save_every_n_iters
        saved = False
        if every and self.global_step % every == 0 and not self._runner_saves_now(batches_in_epoch):
            saved = self.save_step_checkpoint() is not None
        if not self._runner_saves_now(batches_in_epoch):  # else the loop asks after its own save
            self.stop_if_requested(saved)
        return True

    def _runner_saves_now(self, batches_in_epoch: int | None) -> bool:
        """True when the loop itself checkpoints right after the step just taken (epoch or
        inner-epoch end): the ``save_every_n_iters`` save then skips, so no step is written twice."""
        return False

    # ---- logging and bad data ----------------------------------------------------------------
    def _count_bad(self, skipped: list[str]) -> None:
        if skipped:
            self._bad_count += len(skipped)
            self._bad_examples.extend(skipped[: max(0, 5 - len(self._bad_examples))])

    def check_bad_data(self, final: bool = False) -> int:
        """Sum skipped samples over ranks; stop the run past ``run.max_bad_samples``."""
        total = torch.tensor([self._bad_count], dtype=torch.long)
        if is_dist():
            total = total.to(self.device)
            torch_dist.all_reduce(total)
        count = int(total.item())
        if count > self.run.max_bad_samples:
            raise DataError(
                f"{count} unreadable samples in epoch {self.epoch} exceed run.max_bad_samples="
                f"{self.run.max_bad_samples}; first ones: {self._bad_examples}"
            )
        if final:
            if count:
                logger.warning("epoch %d: skipped %d unreadable samples, e.g. %s", self.epoch, count, self._bad_examples)
            self.writer.write("data", self.global_step, epoch=self.epoch, skipped=count, examples=self._bad_examples)
            self._bad_count, self._bad_examples = 0, []
        return count

    def log_train(self) -> None:
        count = max(1, self._loss_count)
        values = {k: float(v) / count for k, v in self._loss_sums.items()}  # the one host sync
        self._loss_sums, self._loss_count = {}, 0
        now = time.time()
        elapsed = now - getattr(self, "_log_time", now)
        self._log_time = now
        values["lr"] = self.scheduler.get_lr()
        if elapsed > 0:
            values["steps_per_s"] = self.run.log_freq / elapsed
        self.writer.write("train", self.global_step, epoch=self.epoch, **values)
        if hasattr(self, "pbar") and self.pbar is not None:
            self.pbar.set_postfix({k: f"{v:.4g}" for k, v in values.items() if k in ("loss", "lr")})
        self.check_bad_data()

    def progress(self, total: int | None, initial: int, desc: str) -> tqdm:
        return tqdm(
            total=total,
            initial=initial,
            desc=desc,
            disable=not (is_main_process() and self.run.progress_bar),
            dynamic_ncols=True,
            mininterval=1.0,
        )

    # ---- checkpoints -------------------------------------------------------------------------
    def training_state(self) -> dict[str, Any]:
        rng = all_gather_object(ckpt.capture_rng_state())
        return {
            "epoch": self.epoch,
            "batches_done": self.batches_done,
            "global_step": self.global_step,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": rng,
            "world_size": self.world_size,
            "best": self.best,
            # what the data position means, so a resume with other settings can say what changed
            "batch_size_train": self.run.batch_size_train,
            "num_workers": self.run.num_workers,
            "train_size": self._train_size(),
        }

    def checkpoint_metadata(self) -> dict[str, str]:
        """What the run was trained with (LLM, tokenizers, encoder weights), stored in every
        checkpoint's safetensors header; computed once (``lavis.common.provenance``)."""
        if getattr(self, "_provenance", None) is None:
            from lavis.common.provenance import provenance_metadata
            from lavis.models.provenance import describe_model

            self._provenance = provenance_metadata(describe_model(self.model))
        return self._provenance

    def _train_size(self) -> int | None:
        sampler = getattr(self, "train_sampler", None)
        return sampler.size if sampler is not None else None

    def save_step_checkpoint(self, final: bool = False) -> Path | None:
        """Checkpoint this step. A failed write is reported and the run goes on from its state in
        memory; a failed ``final`` one (end of training, stop on a signal) is retried, then an error."""
        state = self.training_state()  # collective: every rank takes part
        path, failure = None, None
        if is_main_process():
            path, failure = write_step_checkpoint(
                self.ckpt_dir, f"step_{self.global_step}", self.model.trainable_state_dict(), state,
                self.run.keep_last, metadata=self.checkpoint_metadata(), attempts=self.run.final_save_attempts if final else 1,
                wait_s=self.run.final_save_retry_wait_s,
            )
            if path is not None:
                self.writer.write("checkpoint", self.global_step, path=str(path), epoch=self.epoch)
            else:
                self.writer.write("checkpoint_failed", self.global_step, error=failure, epoch=self.epoch)
        failure = broadcast_object(failure)  # every rank learns the outcome (and waits for the write)
        if failure and final:
            newest = ckpt.latest_checkpoint(self.ckpt_dir)
            raise CheckpointError(f"{failure}; the newest usable checkpoint is {newest or 'none'}")
        return path

    def stop_if_requested(self, saved: bool) -> None:
        """After an optimizer step: on a stop signal (any rank), checkpoint unless ``saved`` and stop."""
        signame = self.stop_signals.agreed(self.device)
        if signame is None:
            return
        logger.warning("%s received: stopping after step %d with a checkpoint", signame, self.global_step)
        if not saved:
            self.save_step_checkpoint(final=True)
        self.check_bad_data(final=True)  # the skipped samples of the epoch so far
        self.writer.write("stopped", self.global_step, signal=signame, epoch=self.epoch)
        self.writer.close()
        newest = ckpt.latest_checkpoint(self.ckpt_dir)
        raise TrainingStopped(
            f"{signame}: stopped after step {self.global_step}, checkpoint {newest}; run again with "
            f"run.resume=auto (or --resume auto) to continue (exit code {EXIT_STOPPED})"
        )

    def maybe_resume(self) -> None:
        target = self.run.resume
        if not target:
            return
        found = read_for_resume(target, self.ckpt_dir)
        if found is None:
            logger.info("run.resume=auto: no checkpoint in %s, starting fresh", self.ckpt_dir)
            return
        path, weights, state = found
        self.model.load_trainable_state_dict(weights, source=str(path))
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.epoch = int(state["epoch"])
        self.global_step = int(state["global_step"])
        self.best = state.get("best")
        now = {"batch_size_train": self.run.batch_size_train, "world_size": self.world_size,
               "train_size": self._train_size(), "num_workers": self.run.num_workers}
        self.batches_done, changes = data_position(state, now, str(path))
        for change in changes:
            logger.warning("resume: %s", change)
        if int(state["world_size"]) == self.world_size:
            ckpt.restore_rng_state(state["rng"][self.rank])
        else:
            logger.warning(
                "resuming %s saved with %s processes on %s: RNG streams are re-seeded, so the run "
                "continues correctly but not bit-identically", path, state["world_size"], self.world_size
            )
        logger.info("resumed from %s at epoch %d, batch %d, step %d", path, self.epoch, self.batches_done, self.global_step)

    # ---- evaluation ----------------------------------------------------------------------------
    def eval_sets(self, splits: list[str]) -> list[tuple[str, Dataset]]:
        sets = []
        for name, by_split in self.datasets.items():
            for split in splits:
                if split in by_split:
                    sets.append((f"{name}_{split}", by_split[split]))
        return sets

    @torch.no_grad()
    def evaluate(self, splits: list[str], epoch: int | str) -> dict[str, dict[str, float]]:
        results: dict[str, dict[str, float]] = {}
        was_training = self.model.training
        self.model.eval()
        for label, dataset in self.eval_sets(splits):
            loader, _ = self._loader(dataset, train=False)
            records: list[dict[str, Any]] = []
            unreadable: list[Any] = []
            bar = self.progress(len(loader), 0, f"eval {label}")
            for batch in loader:
                bar.update(1)
                inputs, meta = pop_bookkeeping(batch)
                unreadable.extend(meta.get("_skipped_samples") or [])
                if batch_size_of(inputs, meta) == 0:
                    continue
                inputs = move_to_device(inputs, self.device)
                with self.model.autocast(self.amp_dtype):
                    out = self.task.valid_step(self.model, inputs)
                for record, index in zip(out, meta["_index"]):
                    record.setdefault("_index", int(index))
                records.extend(out)
            bar.close()
            merged, skipped = merge_ranks(all_gather_object((records, unreadable)))
            expected = len(dataset) if not isinstance(dataset, IterableDataset) else None
            ordered = account_for_every_item(
                self.task, label, merged, skipped, expected, self.run.unreadable_eval_images
            )
            metrics = None
            if is_main_process():
                metrics = self.task.after_evaluation(ordered, label, epoch, self.output_dir)
            metrics = all_gather_object(metrics)[0]
            results[label] = metrics
            self.writer.write("eval", self.global_step, split=label, epoch=epoch, **metrics)
            logger.info("eval %s (epoch %s): %s", label, epoch, metrics)
        self.model.train(was_training)
        return results

    def validate_and_keep_best(self, label: int | str) -> None:
        results = self.evaluate(self.run.valid_splits, label)
        if not results:
            return
        values = [m[self.run.best_metric] for m in results.values() if self.run.best_metric in m]
        if not values:
            raise ConfigError(
                f"run.best_metric '{self.run.best_metric}' is not among the validation metrics "
                f"{sorted(next(iter(results.values())))}"
            )
        value = sum(values) / len(values)
        better = self.best is None or (
            value > self.best["value"] if self.best_mode == "max" else value < self.best["value"]
        )
        if better:
            previous, self.best = self.best, {"value": value, "epoch": self.epoch, "step": self.global_step}
            state = self.training_state()
            written = True
            if is_main_process():
                path, _ = write_step_checkpoint(
                    self.ckpt_dir, "best", self.model.trainable_state_dict(), state, None,
                    metadata=self.checkpoint_metadata(),
                )
                written = path is not None
                if written:
                    logger.info("new best %s=%.5g at step %d", self.run.best_metric, value, self.global_step)
            if not broadcast_object(written):  # best/ was not replaced: keep the record that matches it
                self.best = previous

    def test(self) -> dict[str, dict[str, float]]:
        if not self.run.test_splits:
            return {}
        best = self.ckpt_dir / "best"
        if self.run.test_checkpoint == "best" and (best / ckpt.WEIGHTS_NAME).exists():
            self.model.load_trainable_state_dict(ckpt.load_weights(best), source=str(best))
            label = "best"
        else:
            label = "last"
        return self.evaluate(self.run.test_splits, label)

    def evaluate_only(self) -> dict[str, dict[str, float]]:
        splits = self.run.test_splits or self.run.valid_splits
        if not splits:
            raise ConfigError("evaluation needs run.test_splits (or run.valid_splits)")
        results = self.evaluate(splits, "eval")
        self.writer.close()
        return results

    def finish(self, results: dict[str, Any]) -> None:
        if is_main_process():
            summary = {"global_step": self.global_step, "best": self.best, "test": results}
            ckpt.atomic_write_text(self.output_dir / "summary.json", json.dumps(summary, indent=2, default=str))
        self.writer.close()

    def train(self) -> dict[str, Any]:
        raise NotImplementedError


RUNNERS: Registry[type[RunnerBase]] = Registry("runner", RunnerBase)
register_runner = RUNNERS.register
