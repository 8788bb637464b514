"""A real small file system for the disk-fault cases: a tmpfs the test mounts when it may (root in
a container, as on CI), which then fills up exactly as a disk does. Where mounting is refused the
cases inject the exceptions the libraries raise on a full disk (``SafetensorError``, torch's
``RuntimeError``, ``OSError(ENOSPC)``) at the same calls, so they still test the handling."""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

ENOSPC_SAFETENSORS = "Error while serializing: I/O error: No space left on device (os error 28)"
ENOSPC_TORCH = "[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598"


@contextlib.contextmanager
def small_disk(folder: Path, size: str) -> Iterator[bool]:
    """Mount a tmpfs of ``size`` (e.g. ``"4m"``) on ``folder``; yields whether it was mounted.
    ``LAVIS_TEST_NO_MOUNT=1`` takes the injection path even where mounting works (to check it)."""
    folder.mkdir(parents=True, exist_ok=True)
    if os.environ.get("LAVIS_TEST_NO_MOUNT"):
        yield False
        return
    try:
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                                 capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.SubprocessError):
        mounted = False
    try:
        yield mounted
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(folder)], capture_output=True, timeout=30)


def fill(folder: Path, leave: int = 0) -> Path:
    """Fill the file system of ``folder`` up to ``leave`` free bytes with one file; returns it."""
    filler = folder / "filler.bin"
    with open(filler, "ab") as handle:
        chunk = b"\0" * (1 << 16)
        while True:
            free = os.statvfs(folder).f_bavail * os.statvfs(folder).f_frsize
            if free <= leave:
                break
            try:
                handle.write(chunk[: max(1, min(len(chunk), free - leave))])
                handle.flush()
            except OSError as err:
                if err.errno != errno.ENOSPC:
                    raise
                break
    return filler
