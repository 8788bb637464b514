"""What the runner does around checkpoint files: room at start, failed writes, resume fallback,
and what a changed batch size, world size or data set means for the data position.

- At start the output folder must have room for one more checkpoint (trainable weights plus the
  AdamW moments), so a full disk stops the run in its first second rather than at hour 3.
- A write that fails (disk full, quota, I/O error) is reported in one line; the temporary folder
  is removed, ``last`` still points at the previous checkpoint and the run keeps its state in
  memory. The final write (end of training, or a stop on a signal) is retried after a wait, so
  an operator can free space before that training is lost.
- ``run.resume: auto`` takes the newest checkpoint that reads back completely; an unreadable one
  (a zero-byte ``state.pt``, truncated weights) is passed over with a warning naming the reason.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from lavis.common import checkpoint as ckpt
from lavis.common.disk import human_bytes
from lavis.common.errors import CheckpointError

logger = logging.getLogger(__name__)

ADAMW_BYTES_PER_PARAM = 8  # two fp32 moments
_MARGIN = 1.1  # pickling overhead, safetensors header, the small states


def checkpoint_bytes(model: torch.nn.Module) -> int:
    """Size of one checkpoint: trainable weights in their dtype plus AdamW's two fp32 moments."""
    total = sum(p.numel() * (p.element_size() + ADAMW_BYTES_PER_PARAM) for p in model.parameters() if p.requires_grad)
    return int(total * _MARGIN) + (1 << 20)


def room_problem(folder: Path, needed: int) -> str | None:
    """Why ``folder`` cannot take a checkpoint of ``needed`` bytes, or None."""
    try:
        free = shutil.disk_usage(folder).free
    except OSError as err:
        return f"cannot check free space in {folder}: {err.strerror or err}"
    if free < needed:
        return (
            f"the output folder {folder} has {human_bytes(free)} free, but one checkpoint needs about {human_bytes(needed)} "
            "(trainable weights + AdamW state): free space or set run.output_dir elsewhere"
        )
    return None


def write_step_checkpoint(
    ckpt_dir: Path,
    name: str,
    weights: Mapping[str, torch.Tensor],
    state: Mapping[str, Any],
    metadata: Mapping[str, str] | None = None,
    attempts: int = 1,
    wait_s: float = 0.0,
) -> tuple[Path | None, str | None]:
    """Write ``ckpt_dir/name``; ``metadata`` goes into the weights file's header (the run's
    provenance and id). Returns (path, None), or (None, the one-line failure) after ``attempts``
    tries ``wait_s`` apart. A full disk reaches here as OSError whichever library hit it
    (:func:`lavis.common.checkpoint.save_checkpoint` converts safetensors' and torch's errors)."""
    reason = ""
    for attempt in range(1, attempts + 1):
        try:
            return ckpt.save_checkpoint(ckpt_dir / name, weights, state, metadata), None
        except OSError as err:
            reason = f"{err.strerror or err}" + (f" ({err.filename})" if getattr(err, "filename", None) else "")
            newest = ckpt.latest_checkpoint(ckpt_dir)
            logger.error(
                "checkpoint %s not written: %s; the newest usable checkpoint is %s%s",
                name, reason, newest or "none",
                f"; retrying in {wait_s:g} s (attempt {attempt + 1} of {attempts}): free space now" if attempt < attempts else "",
            )
            if attempt < attempts:
                time.sleep(wait_s)
    return None, f"checkpoint {ckpt_dir / name} could not be written: {reason}"


# ---- resume ------------------------------------------------------------------------------------
def read_for_resume(target: str, ckpt_dir: Path) -> tuple[Path, dict[str, torch.Tensor], dict[str, Any]] | None:
    """(path, weights, state) of the checkpoint to resume from; None when ``auto`` finds none.

    ``auto`` falls back from an unreadable newest checkpoint to the previous one, warning with the
    reason; an explicitly named checkpoint that cannot be read is an error.
    """
    if target != "auto":
        path = Path(target)
        return path, ckpt.load_weights(path), ckpt.load_state(path)
    problems = []
    for path in reversed(ckpt.step_checkpoints(ckpt_dir)):
        try:
            return path, ckpt.load_weights(path), ckpt.load_state(path)
        except CheckpointError as err:
            problems.append(f"{path.name}: {err}")
            logger.warning("run.resume=auto: skipping %s, it cannot be read (%s); trying the previous one", path, err)
    if problems:
        raise CheckpointError(
            f"run.resume=auto: no checkpoint in {ckpt_dir} can be read ({'; '.join(problems)}); "
            "remove them to start over, or name one with --resume"
        )
    return None


def data_position(state: Mapping[str, Any], now: Mapping[str, Any], checkpoint: str) -> tuple[int, list[str]]:
    """The batch (of the current size) at which the saved epoch continues, and warnings saying
    what a changed batch size, world size or train set means for it.

    ``now`` holds ``batch_size_train``, ``world_size``, ``train_size`` (None for a stream),
    ``num_workers`` and ``epoch``; ``state`` is the checkpoint's (older ones lack some keys).
    """
    batches = int(state["batches_done"])
    epoch = int(state["epoch"])
    warnings = []
    old_bs = int(state.get("batch_size_train") or now["batch_size_train"])
    old_world = int(state["world_size"])
    new_bs, new_world = int(now["batch_size_train"]), int(now["world_size"])
    streaming = now["train_size"] is None
    if (old_bs, old_world) != (new_bs, new_world):
        seen = batches * old_bs * old_world  # samples of this epoch's order already trained on
        if streaming:
            warnings.append(
                f"{checkpoint} was saved with batch_size_train={old_bs} on {old_world} process(es), now {new_bs} on "
                f"{new_world}: a streamed train set cannot be repositioned exactly, so epoch {epoch} restarts its "
                "shards' position from the per-rank batch count (some samples repeat or are skipped this epoch)"
            )
        else:
            batches = seen // (new_bs * new_world)
            again = seen - batches * new_bs * new_world
            warnings.append(
                f"{checkpoint} was saved with batch_size_train={old_bs} on {old_world} process(es) "
                f"({old_bs * old_world} samples per batch), now {new_bs} on {new_world} ({new_bs * new_world}): "
                f"epoch {epoch} continues after sample {batches * new_bs * new_world} of its shuffled order "
                f"(batch {batches} of the new size)"
                + (f", so {again} sample(s) are trained on again" if again else "")
                + "; an optimizer step now holds a different number of samples, while the learning-rate "
                "schedule still counts steps"
            )
    elif streaming and state.get("num_workers") is not None and int(state["num_workers"]) != int(now["num_workers"]):
        warnings.append(
            f"{checkpoint} was saved with num_workers={state['num_workers']}, now {now['num_workers']}: a streamed "
            f"train set splits its shards by worker, so epoch {epoch} continues only approximately where it stopped"
        )
    old_size = state.get("train_size")
    if old_size is not None and now["train_size"] is not None and int(old_size) != int(now["train_size"]):
        warnings.append(
            f"the train set had {old_size} samples when {checkpoint} was saved and has {now['train_size']} now: "
            f"epoch {epoch}'s shuffled order is a different one, so the rest of this epoch is not the rest of the "
            "saved one (some samples are seen twice or not at all until it ends)"
        )
    return batches, warnings

