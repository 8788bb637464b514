"""Checkpoint io: atomic writes, trainable weights in safetensors, the rest via weights_only.

A checkpoint is a folder ``<output_dir>/checkpoints/step_<N>/`` holding
``model.safetensors`` (trainable parameters only) and ``state.pt`` (optimizer, scheduler,
scaler, per-rank RNG states, epoch, step and data position). The folder is written under a
temporary name and renamed into place, so a crash mid-save leaves the previous checkpoint intact
and never a half-written one under a real name.
"""

from __future__ import annotations

import io
import os
import random
import re
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from lavis.common.errors import CheckpointError

WEIGHTS_NAME = "model.safetensors"
STATE_NAME = "state.pt"
_STEP_DIR = re.compile(r"^step_(\d+)$")


def process_umask() -> int:
    """The process umask, read without changing it (another thread may be creating files)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # no /proc (macOS): the classic read, briefly racy
    os.umask(mask)
    return mask


def _as_if_created(path: str | os.PathLike, directory: bool = False) -> None:
    """Give a temp file / folder the mode ``open`` / ``mkdir`` would have: mkstemp and mkdtemp
    make them owner-only (0600 / 0700), which would hide results from a team sharing a folder."""
    os.chmod(path, (0o777 if directory else 0o666) & ~process_umask())


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write a file so that readers see either the old content or the complete new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        _as_if_created(tmp)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(err, OSError):
            _name_file(err, path)  # the file the user keeps, not the temporary one
        raise


def _name_file(err: OSError, path: str | os.PathLike) -> None:
    """Give ``err`` the file name it lacks (a failed ``write`` names none), for the one-line message."""
    if err.errno is not None and not err.filename:  # without an errno, str(err) would show only the name
        err.filename = str(path)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


# ---- RNG state (numpy/python states converted to plain types so weights_only can load them) ----
def capture_rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    py_state = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": [py_state[0], list(py_state[1]), py_state[2]],
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: Mapping[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np_state = state["numpy"]
    np.random.set_state(
        (
            "MT19937",
            np_state["keys"].numpy().astype(np.uint32),
            np_state["pos"],
            np_state["has_gauss"],
            np_state["cached_gaussian"],
        )
    )
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ---- checkpoint folders -----------------------------------------------------------------
def save_checkpoint(
    directory: str | os.PathLike,
    weights: Mapping[str, torch.Tensor],
    state: Mapping[str, Any],
    metadata: Mapping[str, str] | None = None,
) -> Path:
    """Write weights + state into ``directory`` atomically (temp folder, then rename)."""
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=directory.parent, prefix=f".{directory.name}.", suffix=".tmp"))
    try:
        _as_if_created(tmp, directory=True)
        tensors = {k: v.detach().to("cpu").contiguous() for k, v in weights.items()}
        _save_weights(tensors, tmp / WEIGHTS_NAME, dict(metadata or {}))
        _as_if_created(tmp / WEIGHTS_NAME)
        _save_state(dict(state), tmp / STATE_NAME)
        if directory.exists():  # re-saving the same step (e.g. "best"): swap atomically-ish
            old = directory.with_name(f".{directory.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(directory, old)
            os.replace(tmp, directory)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return directory


# ---- writes that fail as OSError -----------------------------------------------------------------
# A full disk reaches safetensors as an I/O error it reports as SafetensorError ("... No space left
# on device (os error 28)") and torch.save as a RuntimeError ("unexpected pos 704 vs 598") that
# hides the cause. Both are turned back into the OSError they were, so callers handle one kind.
_OS_ERROR = re.compile(r"\(os error (\d+)\)")


def _save_weights(tensors: dict[str, torch.Tensor], file: Path, metadata: dict[str, str]) -> None:
    try:
        save_file(tensors, str(file), metadata=metadata)
    except SafetensorError as err:
        code = _OS_ERROR.search(str(err))
        if code is None:
            raise
        raise OSError(int(code.group(1)), os.strerror(int(code.group(1))), str(file)) from err


class _Recording(io.RawIOBase):
    """A file wrapper that keeps the OSError a write raised (torch.save replaces it)."""

    def __init__(self, handle: Any) -> None:
        self.handle, self.error = handle, None

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        try:
            return self.handle.write(data)
        except OSError as err:
            self.error = err
            raise


def _save_state(state: dict[str, Any], file: Path) -> None:
    try:
        with open(file, "wb") as handle:
            recording = _Recording(handle)
            try:
                torch.save(state, recording)
            except RuntimeError as err:
                if recording.error is None:
                    raise
                raise recording.error from err
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as err:  # the write, or the flush of its last buffer, found no room
        _name_file(err, file)
        raise


def load_weights(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Trainable weights from a checkpoint folder or a ``.safetensors`` file."""
    path = Path(path)
    file = path / WEIGHTS_NAME if path.is_dir() else path
    if not file.exists():
        raise CheckpointError(f"no weights at '{file}'")
    try:
        return load_file(str(file))
    except Exception as err:  # safetensors raises its own types for corrupt files
        raise CheckpointError(f"cannot read weights '{file}': {_unreadable(file, err)}") from err


def load_state(path: str | os.PathLike) -> dict[str, Any]:
    file = Path(path) / STATE_NAME
    if not file.exists():
        raise CheckpointError(f"no training state at '{file}' (is this a weights-only checkpoint?)")
    try:
        return torch.load(file, map_location="cpu", weights_only=True)
    except Exception as err:
        raise CheckpointError(f"cannot read training state '{file}': {_unreadable(file, err)}") from err


def _unreadable(file: Path, err: Exception) -> str:
    """Why a checkpoint file does not read back, in words (some readers raise with no message)."""
    try:
        size = file.stat().st_size
    except OSError:
        size = None
    if size == 0:
        return "the file is empty (0 bytes): its write never finished"
    first = (str(err).strip().splitlines() or [""])[0][:200]
    return f"{type(err).__name__}: {first}" if first else f"{type(err).__name__} ({size} bytes: truncated or not this format)"


def step_checkpoints(root: str | os.PathLike) -> list[Path]:
    """Complete ``step_<N>`` folders under ``root``, oldest first (temp folders are ignored)."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = []
    for child in root.iterdir():
        match = _STEP_DIR.match(child.name)
        if match and (child / WEIGHTS_NAME).exists() and (child / STATE_NAME).exists():
            found.append((int(match.group(1)), child))
    return [path for _, path in sorted(found)]


def latest_checkpoint(root: str | os.PathLike) -> Path | None:
    found = step_checkpoints(root)
    return found[-1] if found else None


def link_last(root: str | os.PathLike, target: str | os.PathLike) -> Path:
    """Point ``<root>/last`` at ``target`` (a relative symlink, swapped atomically).

    Configs can then name ``runs/<job>/checkpoints/last`` without knowing the step number.
    """
    root = Path(root)
    link = root / "last"
    tmp = root / f".last.{os.getpid()}.tmp"
    tmp.unlink(missing_ok=True)
    os.symlink(Path(target).name, tmp)
    os.replace(tmp, link)
    return link


def prune_checkpoints(root: str | os.PathLike, keep_last: int, candidates: list[Path] | None = None) -> None:
    """Delete all but the newest ``keep_last`` step folders (of ``candidates``, oldest first, when
    given: the current run's), and stale temp folders."""
    root = Path(root)
    found = step_checkpoints(root) if candidates is None else candidates
    for path in found[: max(0, len(found) - keep_last)]:
        shutil.rmtree(path, ignore_errors=True)
    for stale in root.glob(".*.tmp") if root.is_dir() else []:
        if stale.is_symlink() or stale.is_file():
            stale.unlink(missing_ok=True)
        else:
            shutil.rmtree(stale, ignore_errors=True)
