"""One writer per output folder: a second long-running writer fails at once instead of
interleaving its files with the first one's (downloads, checks, caches)."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from lavis.common.errors import LavisError

LOCK_NAME = ".lavis-writer.lock"


@contextlib.contextmanager
def exclusive_writer(folder: str | os.PathLike, what: str) -> Iterator[None]:
    """Hold an exclusive, non-blocking lock on ``folder`` for the duration of the block.

    The lock is an ``flock`` on a file inside the folder, so it is released by the kernel when
    the process dies: a killed run never leaves a stale lock behind.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_NAME
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise LavisError(f"{folder}: {holder} is already writing here; wait for it to finish") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{what} (pid {os.getpid()})")
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
