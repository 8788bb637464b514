"""The training log: every ``run.log_freq`` optimizer steps, the mean losses (and gradient norm)
since the last record, the learning rate and the speed go to ``metrics.jsonl`` and the progress
bar, and the callbacks' ``on_log`` gets them. This is where the losses summed on the device are
read on the host, once per record; the steps in between never wait for the device."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from lavis.runners.callbacks import Callback

if TYPE_CHECKING:
    from lavis.runners.base_runner import RunnerBase


class TrainLog(Callback):
    name = "train_log"

    def __init__(self) -> None:
        super().__init__()
        self.last_time = time.time()
        self.last_step: int | None = None

    def on_train_start(self, runner: RunnerBase) -> None:
        self.last_time, self.last_step = time.time(), runner.global_step

    def on_step_end(self, runner: RunnerBase) -> None:
        if runner.global_step % runner.run.log_freq == 0:
            self.write(runner)

    def write(self, runner: RunnerBase) -> None:
        """A ``train`` record of the steps since the last one (also at the end, for a partial window)."""
        values = runner.step.means.read()
        now = time.time()
        steps = runner.global_step - (self.last_step if self.last_step is not None else runner.global_step)
        values["lr"] = runner.scheduler.get_lr()
        if now > self.last_time and steps > 0:
            values["steps_per_s"] = steps / (now - self.last_time)
        self.last_time, self.last_step = now, runner.global_step
        runner.writer.write("train", runner.global_step, epoch=runner.epoch, **values)
        if runner.pbar is not None:
            runner.pbar.set_postfix({k: f"{v:.4g}" for k, v in values.items() if k in ("loss", "lr")})
        runner.bad_samples.check(runner.epoch, runner.global_step)
        runner.callbacks.on_log(runner, values)

    def flush(self, runner: RunnerBase) -> None:
        """At the end of training or a stop: the steps since the last record, if any."""
        if runner.step.means and runner.global_step != self.last_step:
            self.write(runner)
