"""Epoch-based training: validate every N epochs, keep the best, then test with it."""

from __future__ import annotations

from typing import Any

from lavis.common.errors import ConfigError
from lavis.runners.base_runner import RunnerBase, register_runner


@register_runner("runner_epoch")
class RunnerEpoch(RunnerBase):
    def train(self) -> dict[str, Any]:
        self.build_train_loader()
        if self.data.streaming:
            raise ConfigError("a streaming (webdataset) train set needs run.runner=runner_iter and run.max_iters")
        per_epoch = self.batches_per_epoch() or 0
        self.setup_training(total_steps=(self.data.steps_per_epoch() or 0) * self.run.max_epoch)
        while self.epoch < self.run.max_epoch and not self.stop_requested:
            self.data.position(self.epoch, self.batches_done)
            self.pbar = self.progress(per_epoch, self.batches_done, f"epoch {self.epoch}")
            for batch in self.train_loader:
                self.micro_step(batch, per_epoch)  # after an optimizer step: log, checkpoint, stop checks
                self.pbar.update(1)
                if self.stop_requested:
                    break
            self.pbar.close()
            if self.stop_requested:
                break
            self.bad_samples.check(self.epoch, self.global_step, final=True)
            self.epoch, self.batches_done = self.epoch + 1, 0
            self.callbacks.on_epoch_end(self)  # validation and best, checkpoint, stop checks
        return self.finish()

    # the epoch's end validates and checkpoints
    def boundary_follows(self) -> bool:
        return self.batches_in_epoch is not None and self.batches_done >= self.batches_in_epoch

    def training_done(self) -> bool:
        return self.epoch >= self.run.max_epoch

    def validation_due(self) -> bool:
        return self.epoch % self.run.val_every_n_epochs == 0  # self.epoch counts the finished ones here

    def validation_label(self) -> int:
        return self.epoch - 1  # the epoch just finished
