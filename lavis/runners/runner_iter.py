"""Iteration-based training (``run.max_iters``), for streaming data such as webdataset shards.

Validation and checkpoints happen every ``run.iters_per_inner_epoch`` optimizer steps; the data
restarts (next data epoch, reshuffled) whenever a pass over the train set ends.
"""

from __future__ import annotations

from typing import Any

from lavis.runners.base_runner import RunnerBase, register_runner


@register_runner("runner_iter")
class RunnerIter(RunnerBase):
    def train(self) -> dict[str, Any]:
        max_iters = int(self.run.max_iters or 0)
        self.build_train_loader()
        self.setup_training(total_steps=max_iters)
        self.pbar = self.progress(max_iters, self.global_step, "train")
        mid_pass = False
        while self.global_step < max_iters and not self.stop_requested:
            self.data.position(self.epoch, self.batches_done)
            mid_pass = False
            for batch in self.train_loader:
                if not self.micro_step(batch, self.batches_per_epoch()):  # None for streaming data
                    continue
                self.pbar.update(1)
                if self.boundary_follows():
                    self.callbacks.on_epoch_end(self)  # validation and best, checkpoint, stop checks
                if self.global_step >= max_iters or self.stop_requested:
                    mid_pass = True
                    break
            if not mid_pass:
                self.bad_samples.check(self.epoch, self.global_step, final=True)
                self.epoch, self.batches_done = self.epoch + 1, 0
        self.pbar.close()
        if mid_pass and not self.stop_requested:  # max_iters ended a pass midway: report its skipped samples too
            self.bad_samples.check(self.epoch, self.global_step, final=True)
        return self.finish()

    # validation and a checkpoint follow every inner epoch and the last step
    def _inner(self) -> int:
        return self.run.iters_per_inner_epoch or int(self.run.max_iters or 0)

    def boundary_follows(self) -> bool:
        return self.global_step % self._inner() == 0 or self.training_done()

    def training_done(self) -> bool:
        return self.global_step >= int(self.run.max_iters or 0)

    def validation_due(self) -> bool:
        return (self.global_step // self._inner()) % self.run.val_every_n_epochs == 0

    def validation_label(self) -> str:
        return f"step_{self.global_step}"
