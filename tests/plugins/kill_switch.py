"""Imported by a run (``--import kill_switch``) to SIGKILL it at a known point, so a resume test
can assert exactly where training continues.

With ``LAVIS_TEST_KILL_AFTER_STEP=N`` the process kills itself with SIGKILL right after optimizer
step N + 1 was taken in memory: the checkpoint of step N is on disk, the work of step N + 1 (and
the loader workers' prefetched batches) is lost, as in a crash mid-epoch.
"""

from __future__ import annotations

import os
import signal

from lavis.runners.base_runner import RunnerBase

_KILL_AFTER = int(os.environ["LAVIS_TEST_KILL_AFTER_STEP"])
_micro_step = RunnerBase.micro_step


def _micro_step_then_maybe_die(self, batch, batches_in_epoch):
    stepped = _micro_step(self, batch, batches_in_epoch)
    if stepped and self.global_step == _KILL_AFTER + 1:
        os.kill(os.getpid(), signal.SIGKILL)
    return stepped


RunnerBase.micro_step = _micro_step_then_maybe_die
