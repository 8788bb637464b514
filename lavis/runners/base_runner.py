"""The runner: one training run assembled from components, and one micro-step.

Epoch- and iteration-based runners differ only in how they walk the data (runner_epoch.py,
runner_iter.py). The parts, each in its own file:

- ``RunData`` (train_data.py): splits, feature cache, loaders, the position in an epoch;
- ``TrainStep`` (train_step.py): forward/backward and the optimizer step, no host sync;
- callbacks (callbacks.py), called in this order at every hook: the user's (``run.callbacks``),
  then ``TrainLog`` (train_log.py), ``Validation`` with best tracking (validation.py),
  ``Checkpointer`` (checkpointer.py) and ``StopRequests`` (stopping.py);
- ``BadSamples`` (bad_samples.py) and the run-folder rules (run_folder.py).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from typing import Any, ClassVar

import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import Dataset
from tqdm import tqdm

from lavis.common import checkpoint as ckpt
from lavis.common.batch import batch_size_of, move_to_device, pop_bookkeeping
from lavis.common.dist import (
    broadcast_object,
    get_rank,
    get_world_size,
    is_dist,
    is_main_process,
    resolve_device,
)
from lavis.common.errors import ConfigError, DataError
from lavis.common.logger import JsonlWriter, git_revision
from lavis.common.optim import LR_SCHEDULERS, build_adamw
from lavis.common.output_lock import OutputFolderError
from lavis.common.paths import REPO_ROOT, run_output_dir
from lavis.common.registry import Registry
from lavis.runners import run_folder
from lavis.runners.bad_samples import BadSamples
from lavis.runners.callbacks import CallbackList, build_callbacks
from lavis.runners.checkpointer import Checkpointer
from lavis.runners.checkpointing import checkpoint_bytes, room_problem
from lavis.runners.stop_signals import StopSignals
from lavis.runners.stopping import StopRequests
from lavis.runners.train_data import RunData, with_feature_cache
from lavis.runners.train_log import TrainLog
from lavis.runners.train_step import TrainStep
from lavis.runners.validation import Validation

logger = logging.getLogger(__name__)

_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


class RunnerBase:
    """Owns the model, the data, the step and the callbacks of one run."""

    name: ClassVar[str] = "base"

    def __init__(self, cfg: Any, task: Any, model: torch.nn.Module, datasets: dict[str, dict[str, Dataset]]):
        self.cfg, self.run, self.task = cfg, cfg.run, task
        self.rank, self.world_size = get_rank(), get_world_size()
        self.device = resolve_device(self.run.device, "run.device")
        self.amp_dtype = _DTYPES[self.run.precision]
        self.output_dir = run_output_dir(cfg)
        self.best_mode = self.run.best_mode or task.best_mode
        if not self.run.evaluate:
            self._claim_output_dir()  # before anything is written: a folder holding a run is not reused silently
        if self.run.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
            torch.backends.cudnn.benchmark = False
        self.model = model.to(self.device)
        self.data = RunData(cfg, task, with_feature_cache(datasets, self.model, cfg, self.output_dir, self.device),
                            self.rank, self.world_size, self.device)
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
        self.batches_in_epoch: int | None = None  # None for streaming data
        self.global_step = 0  # optimizer steps taken
        self.best: dict[str, Any] | None = None
        self.stop_requested = False  # a callback's stop request was agreed: the loop ends
        self._last_batch: dict[str, Any] | None = None
        self.step: TrainStep | None = None  # built by setup_training
        self.pbar: tqdm | None = None

        self.writer = JsonlWriter(
            self.output_dir / "metrics.jsonl",
            self.output_dir / "tensorboard" if self.run.tensorboard else None,
        )
        self.stop_signals = StopSignals()  # installed around train() by the command line (lavis/cli/run.py)
        self.bad_samples = BadSamples(self.run.max_bad_samples, self.writer)
        self.train_log = TrainLog()
        self.validation = Validation()
        self.checkpointer = Checkpointer(self.output_dir / "checkpoints")
        self.stop = StopRequests(self.stop_signals)
        self.callbacks = CallbackList([
            *build_callbacks(self.run.callbacks),  # first: an EMA updated at a step's end is what its checkpoint saves
            self.train_log, self.validation, self.checkpointer, self.stop,
        ])
        if self.run.evaluate:
            self._write_run_info()
        else:
            self._check_room_for_a_checkpoint()

    # ---- run folder --------------------------------------------------------------------------
    def _claim_output_dir(self) -> None:
        problem = None
        if is_main_process():
            try:
                run_folder.claim(self.output_dir, self.run)
            except OutputFolderError as err:
                problem = str(err)
        problem = broadcast_object(problem)
        if problem:
            raise OutputFolderError(problem)

    def _check_room_for_a_checkpoint(self) -> None:
        problem = None
        if is_main_process():
            self.output_dir.mkdir(parents=True, exist_ok=True)
            problem = room_problem(self.output_dir, checkpoint_bytes(self.model))
        problem = broadcast_object(problem)
        if problem:
            raise OutputFolderError(problem)

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
        if not self.run.evaluate:
            resumed = self.checkpointer.resumed_from
            info.update(run_id=self.checkpointer.run_id, resumed_from=str(resumed) if resumed else None)
        ckpt.atomic_write_text(self.output_dir / "run_info.json", json.dumps(info, indent=2))

    # ---- the parts a loop and the callbacks use ------------------------------------------------
    @property
    def train_loader(self):
        return self.data.train_loader

    @property
    def train_sampler(self):
        return self.data.train_sampler

    @property
    def optimizer(self) -> torch.optim.Optimizer:
        return self.step.optimizer

    @property
    def scheduler(self) -> Any:
        return self.step.scheduler

    @property
    def scaler(self) -> torch.amp.GradScaler:
        return self.step.scaler

    def build_train_loader(self) -> None:
        self.data.build_train_loader()

    def batches_per_epoch(self) -> int | None:
        return self.data.batches_per_epoch()

    def request_stop(self, reason: str) -> None:
        """For callbacks (a stopping rule): end training after this step, as if it were the last
        (checkpoint, test splits, summary). Any rank may ask; all ranks stop at the same step."""
        self.stop.request(reason)

    def progress(self, total: int | None, initial: int, desc: str) -> tqdm:
        return tqdm(total=total, initial=initial, desc=desc, disable=not (is_main_process() and self.run.progress_bar),
                    dynamic_ncols=True, mininterval=1.0)

    # what a loop decides (runner_epoch.py, runner_iter.py) -----------------------------------------
    def boundary_follows(self) -> bool:
        """True right after the last optimizer step before an epoch end (validation and checkpoint
        come next): the step-end checkpoint and stop check leave that step to the epoch end."""
        raise NotImplementedError

    def training_done(self) -> bool:
        raise NotImplementedError

    def validation_due(self) -> bool:
        raise NotImplementedError

    def validation_label(self) -> int | str:
        raise NotImplementedError

    # ---- setup for training ----------------------------------------------------------------------
    def setup_training(self, total_steps: int) -> None:
        run = self.run
        optimizer = build_adamw(self.model, lr=run.init_lr, weight_decay=run.weight_decay, betas=tuple(run.betas),
                                lr_scales=run.lr_scales)
        scheduler = LR_SCHEDULERS.get(run.lr_sched)(
            optimizer, init_lr=run.init_lr, min_lr=run.min_lr, warmup_lr=run.warmup_lr, warmup_steps=run.warmup_steps,
            total_steps=total_steps, steps_per_epoch=self.data.steps_per_epoch() or 1, decay_rate=run.lr_decay_rate,
        )
        scaler = torch.amp.GradScaler(self.device.type, enabled=run.precision == "fp16")
        self.step = TrainStep(self.model, self.wrapped, self.task, optimizer, scheduler, scaler, self.amp_dtype,
                              run.max_grad_norm)
        optimizer.zero_grad(set_to_none=True)
        self.checkpointer.resume(self)
        self._write_run_info()
        self.callbacks.on_train_start(self)

    # ---- one micro-batch ---------------------------------------------------------------------------
    def micro_step(self, batch: dict[str, Any], batches_in_epoch: int | None) -> bool:
        """Forward/backward one micro-batch; at an accumulation boundary, the optimizer step and the
        callbacks' step end. Returns True when an optimizer step was taken."""
        inputs, meta = pop_bookkeeping(batch)
        self.bad_samples.add(meta.get("_skipped") or [])
        self.batches_done += 1
        self.batches_in_epoch = batches_in_epoch
        at_end = batches_in_epoch is not None and self.batches_done >= batches_in_epoch
        update = self.batches_done % self.run.accum_grad_iters == 0 or at_end
        weight = 1.0
        if batch_size_of(inputs, meta) == 0:
            # Every item was unreadable. With DDP all ranks must still run backward: replay the
            # last good batch with zero weight. Alone, just skip the micro-batch.
            if not is_dist():
                return update and self.step.has_gradients() and self._optimizer_step()
            if self._last_batch is None:
                raise DataError(f"rank {self.rank}: the first batch had no readable sample: {meta.get('_skipped')}")
            inputs, weight = self._last_batch, 0.0
        inputs = move_to_device(inputs, self.device)
        self._last_batch = inputs
        scale = weight * self.data.loss_weight(self.epoch, self.batches_done - 1) / self.run.accum_grad_iters
        self.step.forward_backward(inputs, scale, sync_grads=update, count=weight > 0)
        return update and self._optimizer_step()

    def _optimizer_step(self) -> bool:
        self.step.optimizer_step()
        self.global_step += 1
        self.callbacks.on_step_end(self)  # log, checkpoint, stop requests, and the user's
        return True

    # ---- evaluation and the end ----------------------------------------------------------------
    def evaluate_only(self) -> dict[str, dict[str, float]]:
        splits = self.run.test_splits or self.run.valid_splits
        if not splits:
            raise ConfigError("evaluation needs run.test_splits (or run.valid_splits)")
        results = self.validation.evaluate(self, splits, "eval")
        self.writer.close()
        return results

    def finish(self) -> dict[str, Any]:
        """After the last step (or a callback's stop): the test splits, the summary, the end hooks."""
        self.train_log.flush(self)
        results = self.validation.test(self)
        if is_main_process():
            summary = {"global_step": self.global_step, "best": self.best, "test": results}
            ckpt.atomic_write_text(self.output_dir / "summary.json", json.dumps(summary, indent=2, default=str))
        self.callbacks.on_train_end(self, results)
        self.writer.close()
        return results

    def train(self) -> dict[str, Any]:
        raise NotImplementedError


RUNNERS: Registry[type[RunnerBase]] = Registry("runner", RunnerBase)
register_runner = RUNNERS.register
