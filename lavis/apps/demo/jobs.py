"""Run the demo's stages as the real entry points (``train.py``, ``evaluate.py``, ...), a few at a time.

The demo's models are small: one training process cannot keep two cores busy, so independent
stages (the stage-2 model and its question-only twin, the evaluations) run side by side, each
with its share of the cores. The first job of a batch prints to the console (its progress bars);
the others write ``<out_dir>/logs/<label>.log``.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from lavis.common.paths import REPO_ROOT

logger = logging.getLogger("lavis.apps.demo")


@dataclasses.dataclass
class Job:
    label: str
    script: str  # an entry point at the repository root
    cfg: str
    options: list[str]

    def command(self) -> list[str]:
        return [sys.executable, self.script, "--cfg-path", self.cfg, "--options", *self.options]


class JobFailed(RuntimeError):
    def __init__(self, job: Job, code: int, log: Path | None) -> None:
        where = f"; its log: {log}" if log else ""
        super().__init__(f"{job.label} failed with exit code {code}: {' '.join(job.command())}{where}")


class RunningJob:
    """A started entry point; ``wait()`` returns ``{label: seconds}`` or raises :class:`JobFailed`."""

    def __init__(self, job: Job, log: Path | None, threads: int | None) -> None:
        self.job, self.log = job, log
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        if threads is not None:
            env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
        self._handle: IO[str] | None = None
        if log is not None:
            log.parent.mkdir(parents=True, exist_ok=True)
            self._handle = open(log, "w", encoding="utf-8")  # noqa: SIM115 - closed in wait()
        logger.info("%s: %s%s", job.label, " ".join(job.command()), f" (log: {log})" if log else "")
        self._start = time.time()
        self._process = subprocess.Popen(job.command(), cwd=REPO_ROOT, env=env, stdout=self._handle,
                                         stderr=subprocess.STDOUT if self._handle else None)

    def wait(self, check: bool = True) -> dict[str, float]:
        code = self._process.wait()
        if self._handle is not None:
            self._handle.close()
        seconds = round(time.time() - self._start, 1)
        logger.info("%s finished in %.0f s", self.job.label, seconds)
        if code != 0 and check:
            raise JobFailed(self.job, code, self.log)
        return {self.job.label: seconds}


def start_job(job: Job, log_dir: Path | None, threads: int | None = None) -> RunningJob:
    """Start ``job``; with ``log_dir`` its output goes to ``<log_dir>/<label>.log``, else to the console."""
    return RunningJob(job, None if log_dir is None else log_dir / f"{job.label}.log", threads)


def run_jobs(jobs: Sequence[Job], log_dir: Path, parallel: int = 1, cpus: int | None = None) -> dict[str, float]:
    """Run ``jobs`` at most ``parallel`` at a time; returns seconds per label. A failure lets the
    rest of its batch finish, then raises :class:`JobFailed` naming the job and its log."""
    cpus = cpus or len(os.sched_getaffinity(0))
    timings: dict[str, float] = {}
    pending = list(jobs)
    while pending:
        batch, pending = pending[: max(1, parallel)], pending[max(1, parallel) :]
        threads = max(1, cpus // len(batch)) if len(batch) > 1 else None
        running = [start_job(job, None if i == 0 else log_dir, threads) for i, job in enumerate(batch)]
        failures = []
        for job in running:
            try:
                timings.update(job.wait())
            except JobFailed as err:
                failures.append(err)
        if failures:
            raise failures[0]
    return timings
