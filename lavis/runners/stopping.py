"""Stop requests: a stop signal (SIGTERM, SIGUSR1, Ctrl-C; :mod:`lavis.runners.stop_signals`) or a
callback's ``runner.request_stop(reason)`` (a stopping rule), agreed by all ranks after a step.

A signal stops the run to be continued later: checkpoint, then exit 75. A callback's request
ends it as finished: checkpoint, then the test splits and the summary as after the last epoch.
The ranks agree on the host (:func:`lavis.common.dist.host_all_reduce`; nothing at all with one
process), so the check costs the device nothing at each step.
"""

from __future__ import annotations

import logging
import signal
from typing import TYPE_CHECKING

from lavis.common.dist import all_gather_object, host_all_reduce
from lavis.runners.callbacks import Callback
from lavis.runners.stop_signals import EXIT_STOPPED, StopSignals, TrainingStopped

if TYPE_CHECKING:
    from lavis.runners.base_runner import RunnerBase

logger = logging.getLogger(__name__)


class StopRequests(Callback):
    name = "stop_requests"

    def __init__(self, signals: StopSignals) -> None:
        super().__init__()
        self.signals = signals
        self.reason: str | None = None  # this rank's callback request

    def request(self, reason: str) -> None:
        if self.reason is None:
            self.reason = reason

    def on_step_end(self, runner: RunnerBase) -> None:
        if not runner.boundary_follows():  # else the epoch's end checks, after its checkpoint
            self.check(runner)

    def on_epoch_end(self, runner: RunnerBase) -> None:
        self.check(runner)

    def check(self, runner: RunnerBase) -> None:
        signum, asked = host_all_reduce([self.signals.signum, int(self.reason is not None)])
        if signum:
            self._stop_on_signal(runner, signal.Signals(signum).name)
        elif asked and not runner.stop_requested:
            reason = next(r for r in all_gather_object(self.reason) if r is not None)
            logger.warning("stopping after step %d: %s", runner.global_step, reason)
            self._save(runner)
            runner.writer.write("stopped", runner.global_step, reason=reason, epoch=runner.epoch)
            runner.stop_requested = True  # the loop ends; the test splits and the summary follow

    def _save(self, runner: RunnerBase) -> None:
        runner.train_log.flush(runner)
        if not runner.checkpointer.saved_this_step(runner):
            runner.checkpointer.save(runner, final=True)
        runner.bad_samples.check(runner.epoch, runner.global_step, final=True)  # the epoch so far

    def _stop_on_signal(self, runner: RunnerBase, name: str) -> None:
        logger.warning("%s received: stopping after step %d with a checkpoint", name, runner.global_step)
        self._save(runner)
        runner.writer.write("stopped", runner.global_step, signal=name, epoch=runner.epoch)
        runner.writer.close()
        newest = runner.checkpointer.newest()
        raise TrainingStopped(
            f"{name}: stopped after step {runner.global_step}, checkpoint {newest}; run again with "
            f"run.resume=auto (or --resume auto) to continue (exit code {EXIT_STOPPED})"
        )
