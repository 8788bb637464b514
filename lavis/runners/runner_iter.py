"""Iteration-based training (``run.max_iters``), for streaming data such as webdataset shards.

Validation and checkpoints happen every ``run.iters_per_inner_epoch`` optimizer steps; the data
restarts (next data epoch, reshuffled) whenever a pass over the train set ends.
"""

from __future__ import annotations

from typing import Any

from lavis.runners.base_runner import RunnerBase, register_runner


@register_runner("runner_iter")
class RunnerIter(RunnerBase):
    def _runner_saves_now(self, batches_in_epoch: int | None) -> bool:
        """Validation and a checkpoint follow every inner epoch and the last step."""
        max_iters = int(self.run.max_iters or 0)
        inner = self.run.iters_per_inner_epoch or max_iters
        return self.global_step % inner == 0 or self.global_step >= max_iters

    def train(self) -> dict[str, Any]:
        max_iters = int(self.run.max_iters or 0)
        inner = self.run.iters_per_inner_epoch or max_iters
        self.build_train_loader()
        self.setup_training(total_steps=max_iters)
        self.pbar = self.progress(max_iters, self.global_step, "train")
        finished_pass = True
        while self.global_step < max_iters:
            per_epoch = self.batches_per_epoch()  # None for streaming data
            self._position_loader()
            finished_pass = True
            for batch in self.train_loader:
                if not self.micro_step(batch, per_epoch):
                    continue
                self.pbar.update(1)
                if self._runner_saves_now(per_epoch):
                    inner_epoch = self.global_step // inner
                    if self.run.valid_splits and inner_epoch % self.run.val_every_n_epochs == 0:
                        self.validate_and_keep_best(f"step_{self.global_step}")
                    saved = self.save_step_checkpoint(final=self.global_step >= max_iters)
                    self.stop_if_requested(saved=saved is not None)
                if self.global_step >= max_iters:
                    finished_pass = False
                    break
            if finished_pass:
                self.check_bad_data(final=True)
                self.epoch, self.batches_done = self.epoch + 1, 0
        self.pbar.close()
        if not finished_pass:  # max_iters ended a pass midway: report its skipped samples too
            self.check_bad_data(final=True)
        results = self.test()
        self.finish(results)
        return results
