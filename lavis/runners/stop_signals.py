"""Stop a training run cleanly on SIGTERM, SIGUSR1 or Ctrl-C: finish the step, checkpoint, exit 75.

SLURM sends SIGTERM when it preempts or cancels a job, and ``#SBATCH --signal=USR1@120`` sends
SIGUSR1 two minutes before the time limit. Either (or a first Ctrl-C) asks the run to stop: the
current optimizer step finishes, a checkpoint is written, and the process exits with
``EXIT_STOPPED`` (75, ``EX_TEMPFAIL``: "try again later"), so a job script can requeue itself and
``run.resume: auto`` continues where it stopped. All ranks agree before acting (the request is
reduced on the host over the process group at each step, :mod:`lavis.runners.stopping`), so no
rank waits alone in a collective.

A second Ctrl-C abandons the step at once (exit 130, no checkpoint). Signals repeated within a few
seconds count as one: a terminal's Ctrl-C reaches every process of the group and torchrun then
forwards it to its workers again.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import Any

EXIT_STOPPED = 75  # sysexits.h EX_TEMPFAIL: stopped on request with a checkpoint; rerun to continue
EXIT_INTERRUPTED = 130  # 128 + SIGINT: stopped at once, without a checkpoint
STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT)
_REPEAT_GRACE_S = 3.0


class TrainingStopped(Exception):
    """The run stopped on a signal after writing a checkpoint; the message says how to continue."""


class StopSignals:
    """``with StopSignals() as stop:`` turns the stop signals into a request the loop polls."""

    def __init__(self) -> None:
        self.signum = 0  # the first stop signal received, 0 for none
        self.first_at = 0.0
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        now = time.monotonic()
        if self.signum and signum == signal.SIGINT and now - self.first_at > _REPEAT_GRACE_S:
            raise KeyboardInterrupt  # a second Ctrl-C: abandon now
        if not self.signum:
            self.signum, self.first_at = signum, now  # no logging here: handlers must not take locks

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for signum in STOP_SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()


def ignore_stop_signals(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: workers leave stop signals to the main process.

    SLURM and a terminal signal every process of the job, and a worker ended by one would break
    the step the main process is finishing (the DataLoader's SIGCHLD check raises). SIGINT and
    SIGUSR1 are ignored. SIGTERM is also how the DataLoader and the interpreter's exit end their
    workers, so it is taken by a thread that knows the sender: from the main process it ends the
    worker at once (exit 0, which the SIGCHLD check takes as a normal end); from anyone else (the
    job-wide signal) it is left to the main process, which stops the loader when it is done.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})  # threads made from here on inherit it
    threading.Thread(target=_end_on_sigterm_from, args=(os.getppid(),), name="sigterm", daemon=True).start()


def _end_on_sigterm_from(parent: int) -> None:
    while True:
        if signal.sigwaitinfo({signal.SIGTERM}).si_pid == parent:
            os._exit(0)
