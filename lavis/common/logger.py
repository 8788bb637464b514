"""Logging: rank-0 console, a JSONL metrics file, optional TensorBoard, the git revision."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from lavis.common.checkpoint import atomic_write_text
from lavis.common.dist import is_main_process

logger = logging.getLogger("lavis")


def setup_logging(level: int = logging.INFO) -> None:
    """Console logging on rank 0; other ranks only report warnings and errors."""
    root = logging.getLogger()
    if getattr(root, "_lavis_configured", False):
        return
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
    root.addHandler(handler)
    root.setLevel(level if is_main_process() else logging.WARNING)
    root._lavis_configured = True  # type: ignore[attr-defined]


class JsonlWriter:
    """Appends one JSON object per line to ``metrics.jsonl`` on rank 0 (and to TensorBoard)."""

    def __init__(self, path: str | os.PathLike, tensorboard_dir: str | os.PathLike | None = None) -> None:
        self.path = Path(path)
        self.enabled = is_main_process()
        self.tensorboard_dir = tensorboard_dir
        self.tb: Any = None  # opened at the first record, so that a resume can purge first
        self._purge_step: int | None = None
        self._failing = False

    def keep_until(self, step: int | None) -> None:
        """Before the first record of a resumed (or restarted) run: drop the records of steps
        after ``step`` (None: all), the training that is done again, so the file holds one run's
        history; TensorBoard hides its events after ``step`` too. The file is replaced atomically."""
        if not self.enabled:
            return
        self._purge_step = (step or 0) + 1 if step is not None else 0
        if not self.path.is_file():
            return
        lines = self.path.read_text(encoding="utf-8").splitlines(keepends=True)
        kept = [line for line in lines if step is not None and _step_of(line) is not None and _step_of(line) <= step]
        if len(kept) != len(lines):
            logger.info("%s: %d records of steps after %s dropped (that training is done again)", self.path,
                        len(lines) - len(kept), step if step is not None else "the start")
            atomic_write_text(self.path, "".join(kept))

    def write(self, kind: str, step: int, **values: Any) -> None:
        if not self.enabled:
            return
        record = {"type": kind, "step": step, "time": round(time.time(), 3), **values}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(record, default=str) + "\n")
        except OSError as err:  # a full disk must not end the training: say so once, go on
            if not self._failing:
                logger.error("%s: cannot append (%s); training goes on, metrics are not recorded", self.path, err.strerror or err)
            self._failing = True
            return
        self._failing = False
        self._open_tensorboard()
        if self.tb is not None:
            for name, value in values.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    self.tb.add_scalar(f"{kind}/{name}", value, step)

    def _open_tensorboard(self) -> None:
        if self.tb is not None or self.tensorboard_dir is None:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(self.tensorboard_dir), purge_step=self._purge_step)
        except ImportError:
            logger.warning("tensorboard is not installed: `pip install tensorboard` to enable it")
            self.tensorboard_dir = None

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def _step_of(line: str) -> int | None:
    try:
        step = json.loads(line).get("step")
    except (ValueError, AttributeError):
        return None  # a torn last line of a killed run
    return step if isinstance(step, int) else None


def git_revision(path: str | os.PathLike) -> dict[str, Any]:
    """The commit the code runs from and whether the tree had uncommitted changes."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=path, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=path, capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip()
        return {"commit": commit, "dirty": bool(dirty)}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
