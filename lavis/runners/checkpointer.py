"""The runner's checkpoints: what a checkpoint holds, when one is written, keep-last pruning, and
resuming from one (exactly: optimizer, scheduler, scaler, every rank's RNG, the data position,
the best record and every callback's state).

Cadence: a checkpoint at every epoch end (``runner_iter``: inner epoch and last step) and every
``run.save_every_n_iters`` steps in between. File-level rules (room at start, failed writes,
unreadable checkpoints) are in :mod:`lavis.runners.checkpointing`; the run-folder rules (one run
per folder, pruning only this run's) in :mod:`lavis.runners.run_folder`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lavis.common import checkpoint as ckpt
from lavis.common.dist import all_gather_object, broadcast_object, is_main_process
from lavis.common.errors import CheckpointError
from lavis.runners import run_folder
from lavis.runners.callbacks import Callback
from lavis.runners.checkpointing import data_position, read_for_resume, write_step_checkpoint

if TYPE_CHECKING:
    from lavis.runners.base_runner import RunnerBase

logger = logging.getLogger(__name__)


class Checkpointer(Callback):
    name = "checkpoints"

    def __init__(self, ckpt_dir: Path) -> None:
        super().__init__()
        self.dir = ckpt_dir
        self.run_id = run_folder.new_run_id()  # replaced by the checkpoint's on resume
        self.resumed_from: Path | None = None
        self.last_saved_step: int | None = None
        self._provenance: dict[str, str] | None = None

    # ---- when ------------------------------------------------------------------------------
    def on_step_end(self, runner: RunnerBase) -> None:
        every = runner.run.save_every_n_iters
        if every and runner.global_step % every == 0 and not runner.boundary_follows():
            self.save(runner)

    def on_epoch_end(self, runner: RunnerBase) -> None:
        self.save(runner, final=runner.training_done())

    def saved_this_step(self, runner: RunnerBase) -> bool:
        return self.last_saved_step == runner.global_step

    def newest(self) -> Path | None:
        return ckpt.latest_checkpoint(self.dir)

    # ---- what --------------------------------------------------------------------------------
    def training_state(self, runner: RunnerBase) -> dict[str, Any]:
        rng = all_gather_object(ckpt.capture_rng_state())  # collective: every rank takes part
        return {
            "epoch": runner.epoch,
            "batches_done": runner.batches_done,
            "global_step": runner.global_step,
            "optimizer": runner.optimizer.state_dict(),
            "scheduler": runner.scheduler.state_dict(),
            "scaler": runner.scaler.state_dict(),
            "rng": rng,
            "world_size": runner.world_size,
            "best": runner.best,
            "run_id": self.run_id,
            "callbacks": runner.callbacks.state_dict(),
            # what the data position means, so a resume with other settings can say what changed
            "batch_size_train": runner.run.batch_size_train,
            "num_workers": runner.run.num_workers,
            "train_size": runner.data.train_size(),
        }

    def metadata(self, runner: RunnerBase) -> dict[str, str]:
        """The safetensors header of every checkpoint: what the run was trained with (LLM,
        tokenizers, encoder weights; computed once, ``lavis.common.provenance``) and its id."""
        if self._provenance is None:
            from lavis.common.provenance import provenance_metadata
            from lavis.models.provenance import describe_model

            self._provenance = provenance_metadata(describe_model(runner.model))
        return {**self._provenance, run_folder.RUN_ID_KEY: self.run_id}

    # ---- writing -----------------------------------------------------------------------------
    def save(self, runner: RunnerBase, final: bool = False) -> Path | None:
        """Checkpoint this step. A failed write is reported and the run goes on from its state in
        memory; a failed ``final`` one (end of training, a stop) is retried, then an error."""
        state = self.training_state(runner)
        path, failure = None, None
        if is_main_process():
            path, failure = write_step_checkpoint(
                self.dir, f"step_{runner.global_step}", runner.model.trainable_state_dict(), state,
                metadata=self.metadata(runner), attempts=runner.run.final_save_attempts if final else 1,
                wait_s=runner.run.final_save_retry_wait_s,
            )
            if path is not None:
                self._prune_and_link(runner, path)
                runner.writer.write("checkpoint", runner.global_step, path=str(path), epoch=runner.epoch)
            else:
                runner.writer.write("checkpoint_failed", runner.global_step, error=failure, epoch=runner.epoch)
        path, failure = broadcast_object((path, failure))  # every rank learns the outcome (and waits for the write)
        if failure and final:
            raise CheckpointError(f"{failure}; the newest usable checkpoint is {self.newest() or 'none'}")
        if path is not None:
            self.last_saved_step = runner.global_step
            runner.callbacks.on_checkpoint(runner, path)
        return path

    def _prune_and_link(self, runner: RunnerBase, path: Path) -> None:
        try:
            candidates = run_folder.prunable(self.dir, self.run_id, runner.global_step)
            ckpt.prune_checkpoints(self.dir, runner.run.keep_last, candidates)
            ckpt.link_last(self.dir, path)
        except OSError as err:  # the checkpoint itself is complete: say so and go on
            logger.error("checkpoint %s written, but pruning or the 'last' link failed: %s", path, err.strerror or err)

    def save_best(self, runner: RunnerBase) -> bool:
        """Write ``best/`` (every rank calls this); False when it could not be written."""
        state = self.training_state(runner)
        written = True
        if is_main_process():
            path, _ = write_step_checkpoint(self.dir, "best", runner.model.trainable_state_dict(), state,
                                            metadata=self.metadata(runner))
            written = path is not None
        return bool(broadcast_object(written))

    # ---- resuming ----------------------------------------------------------------------------
    def resume(self, runner: RunnerBase) -> None:
        """Restore the run from ``run.resume`` (a checkpoint, or ``auto``: the newest readable one)."""
        target = runner.run.resume
        if not target:
            return
        found = read_for_resume(target, self.dir)
        if found is None:
            logger.info("run.resume=auto: no checkpoint in %s, starting fresh", self.dir)
            runner.writer.keep_until(None)  # the attempt that left no checkpoint starts over
            return
        path, weights, state = found
        step = int(state["global_step"])
        problem = None
        if is_main_process():
            try:
                run_folder.refuse_rollback(self.dir, path, step)
            except Exception as err:  # raised on every rank alike, below
                problem = err
        problem = broadcast_object(problem)
        if problem is not None:
            raise problem
        runner.model.load_trainable_state_dict(weights, source=str(path))
        runner.optimizer.load_state_dict(state["optimizer"])
        runner.scheduler.load_state_dict(state["scheduler"])
        runner.scaler.load_state_dict(state["scaler"])
        runner.epoch, runner.global_step = int(state["epoch"]), step
        runner.best = state.get("best")
        runner.callbacks.load_state_dict(state.get("callbacks") or {}, str(path))
        self.run_id = state.get("run_id") or self.run_id  # older checkpoints have none: a new id
        self.resumed_from, self.last_saved_step = path, step
        now = {"batch_size_train": runner.run.batch_size_train, "world_size": runner.world_size,
               "train_size": runner.data.train_size(), "num_workers": runner.run.num_workers}
        runner.batches_done, changes = data_position(state, now, str(path))
        for change in changes:
            logger.warning("resume: %s", change)
        if int(state["world_size"]) == runner.world_size:
            ckpt.restore_rng_state(state["rng"][runner.rank])
        else:
            logger.warning(
                "resuming %s saved with %s processes on %s: RNG streams are re-seeded, so the run "
                "continues correctly but not bit-identically", path, state["world_size"], runner.world_size
            )
        runner.writer.keep_until(step)
        logger.info("resumed from %s at epoch %d, batch %d, step %d", path, runner.epoch, runner.batches_done, step)
