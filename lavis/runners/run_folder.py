"""A run folder holds one run: it is never reused silently, and pruning touches only that run.

- A training run started in a folder that holds a previous run's records (checkpoints,
  ``metrics.jsonl``, ``summary.json``) is refused unless it continues that run (``--resume
  auto``, or ``--resume`` naming one of its checkpoints) or the user asks to start over in it
  (``--overwrite``: those records are deleted first). The refusal names all three ways out and a
  new folder.
- Continuing from a checkpoint that later checkpoints of the folder follow (a rollback) would
  replace them one by one as the run goes on: refused, naming them.
- Every run has an id, kept across resumes, stored in each checkpoint's header; keep-last
  pruning deletes only checkpoints of the current run at or before its current step, so another
  run's checkpoints and the steps still ahead are never deleted by it.
- ``metrics.jsonl`` belongs to one run: a resume drops the records of the steps after its
  checkpoint (training that was lost and is done again); starting over empties it.
"""

from __future__ import annotations

import logging
import re
import shutil
import uuid
from pathlib import Path
from typing import Any

from lavis.common.checkpoint import WEIGHTS_NAME, load_state, load_weights, step_checkpoints
from lavis.common.errors import CheckpointError
from lavis.common.output_lock import OutputFolderError
from lavis.common.provenance import safetensors_header

logger = logging.getLogger(__name__)

RUN_ID_KEY = "lavis_run_id"  # in each checkpoint's safetensors header
METRICS = "metrics.jsonl"
RECORDS = ("checkpoints", METRICS, "summary.json", "tensorboard")  # what --overwrite deletes
_STEP = re.compile(r"^step_(\d+)$")


def new_run_id() -> str:
    return uuid.uuid4().hex[:16]


def run_id_of(checkpoint: Path) -> str | None:
    """The run id in a checkpoint's weights header (None: an older checkpoint, or unreadable)."""
    try:
        return (safetensors_header(checkpoint / WEIGHTS_NAME).get("__metadata__") or {}).get(RUN_ID_KEY)
    except (OSError, ValueError):
        return None


def step_of(checkpoint: Path) -> int | None:
    match = _STEP.match(checkpoint.name)
    return int(match.group(1)) if match else None


def previous_run(output_dir: Path) -> list[str]:
    """What ``output_dir`` holds of a training run, in words (empty: nothing)."""
    held = []
    ckpt_dir = output_dir / "checkpoints"
    steps = [p for p in ckpt_dir.iterdir() if _STEP.match(p.name) or p.name == "best"] if ckpt_dir.is_dir() else []
    if steps:
        newest = step_checkpoints(ckpt_dir)
        held.append(f"{len(steps)} checkpoint(s)" + (f", newest {newest[-1].name}" if newest else ""))
    metrics = output_dir / METRICS
    if metrics.is_file() and metrics.stat().st_size:
        held.append(f"{METRICS} with {sum(1 for _ in metrics.open('rb'))} records")
    if (output_dir / "summary.json").is_file():
        held.append("summary.json")
    return held


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
        return True
    except (OSError, ValueError):
        return False


def claim(output_dir: Path, run: Any) -> None:
    """Before a training run writes anything: refuse a folder holding another run, or clear it
    with ``run.overwrite``. Continuing the folder's own run is checked again at resume."""
    held = previous_run(output_dir)
    if not held:
        return
    if run.overwrite:
        for name in RECORDS:
            path = output_dir / name
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
        logger.warning("run.overwrite: deleted the previous run in %s (%s)", output_dir, "; ".join(held))
        return
    if run.resume == "auto" or (run.resume and _inside(Path(run.resume), output_dir / "checkpoints")):
        return
    named = f"--resume {run.resume} continues another run, " if run.resume else ""
    raise OutputFolderError(
        f"{output_dir} already holds a training run ({'; '.join(held)}): {named}continue that one with "
        "--resume auto, start it over in this folder with --overwrite (deletes its checkpoints and metrics), "
        "or set run.output_dir to a new folder"
    )


def refuse_rollback(ckpt_dir: Path, resumed: Path, step: int) -> None:
    """Resuming at ``step`` from a checkpoint of ``ckpt_dir`` that readable later ones follow."""
    if not _inside(resumed, ckpt_dir):
        return
    later = [p.name for p in step_checkpoints(ckpt_dir) if (step_of(p) or 0) > step and _readable(p)]
    if later:
        raise OutputFolderError(
            f"{ckpt_dir} holds checkpoints after step {step} ({', '.join(later)}): continuing from {resumed.name} "
            "would replace them one by one; move them out of the folder first, or continue in a new folder "
            "(--options run.output_dir=...)"
        )


def _readable(checkpoint: Path) -> bool:
    try:
        load_weights(checkpoint), load_state(checkpoint)
    except CheckpointError:
        return False  # unreadable (``run.resume: auto`` passed over it): the run writes that step anew
    return True


def prunable(ckpt_dir: Path, run_id: str, current_step: int) -> list[Path]:
    """This run's step checkpoints at or before ``current_step``, oldest first (pruning's candidates)."""
    return [p for p in step_checkpoints(ckpt_dir) if (step_of(p) or 0) <= current_step and run_id_of(p) == run_id]
