"""Epoch-based training: validate every N epochs, keep the best, then test with it."""

from __future__ import annotations

from typing import Any

from lavis.common.errors import ConfigError
from lavis.runners.base_runner import RunnerBase, register_runner


@register_runner("runner_epoch")
class RunnerEpoch(RunnerBase):
    def _runner_saves_now(self, batches_in_epoch: int | None) -> bool:
        """A checkpoint follows the last batch of every epoch."""
        return batches_in_epoch is not None and self.batches_done >= batches_in_epoch

    def train(self) -> dict[str, Any]:
        self.build_train_loader()
        if self.streaming:
            raise ConfigError("a streaming (webdataset) train set needs run.runner=runner_iter and run.max_iters")
        per_epoch = self.batches_per_epoch() or 0
        self.setup_training(total_steps=(self.steps_per_epoch() or 0) * self.run.max_epoch)
        while self.epoch < self.run.max_epoch:
            self._position_loader()
            self.pbar = self.progress(per_epoch, self.batches_done, f"epoch {self.epoch}")
            for batch in self.train_loader:
                self.micro_step(batch, per_epoch)
                self.pbar.update(1)
            self.pbar.close()
            self.check_bad_data(final=True)
            finished = self.epoch
            self.epoch, self.batches_done = finished + 1, 0
            if self.run.valid_splits and (finished + 1) % self.run.val_every_n_epochs == 0:
                self.validate_and_keep_best(finished)
            saved = self.save_step_checkpoint(final=self.epoch >= self.run.max_epoch)
            self.stop_if_requested(saved=saved is not None)
        results = self.test()
        self.finish(results)
        return results
