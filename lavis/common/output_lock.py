"""One writer per output folder: a training run, an instruction run, a cache build or a slide job
owns its folder while it runs, and a second writer pointed at the same folder is refused.

The lock is a file ``<folder>/.lock`` created with O_EXCL (atomic on local filesystems and on NFS
v3+), holding who owns it: host, pid, the process's start time (so a recycled pid is not mistaken
for the holder), what it is and since when. A lock left by a dead process on this host is taken
over with a warning; one held from another host cannot be checked from here, so the error says
how to remove it once that job is known to be gone. All ranks of one torchrun job share the lock:
rank 0 takes it and tells the others (:func:`lock_output_for_job`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lavis.common.errors import LavisError

logger = logging.getLogger(__name__)

LOCK_NAME = ".lock"


class OutputLockedError(LavisError):
    """Another live writer owns the output folder."""


class OutputFolderError(LavisError):
    """The output folder cannot be created or written (read-only, no permission, a file in the way)."""


# Options whose value is a secret (``--token hf_...``): the lock file is readable by others and its
# command line is shown to whoever is refused, so such values are never written there.
_SECRET_OPTION = re.compile(r"^--?([\w-]*[-_])?(token|key|secret|password)$", re.IGNORECASE)


def without_secrets(argv: list[str]) -> list[str]:
    """``argv`` with the values of secret options replaced by ``***``."""
    out, value_next = [], False
    for arg in argv:
        name, eq, _ = arg.partition("=")
        secret = not value_next and bool(_SECRET_OPTION.match(name))
        out.append("***" if value_next else f"{name}=***" if secret and eq else arg)
        value_next = secret and not eq
    return out


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux), to tell a recycled pid apart."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return fields[19]  # field 22 of stat; fields[0] is field 3 (state)
    except (OSError, IndexError):
        return None


def _alive(pid: int, started: str | None) -> bool:
    if pid <= 0:
        return False  # not a process (a torn record); kill() would signal a whole group
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by another user
    now = _start_time(pid)
    return started is None or now is None or now == started


class OutputLock:
    """``with OutputLock(folder, "training run"):`` owns ``folder`` for the block (or acquire/release).

    ``name`` picks another lock file in the folder, so that writers of different files there (e.g.
    two ``lavis.apps.predict`` answer files) do not exclude each other.
    """

    def __init__(self, folder: str | os.PathLike, what: str, name: str = LOCK_NAME) -> None:
        self.folder = Path(folder)
        self.path = self.folder / name
        self.what = what
        self.record = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "started_ticks": _start_time(os.getpid()),
            "what": what,
            "since": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "argv": without_secrets(sys.argv),
        }
        self.held = False

    def acquire(self) -> OutputLock:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise OutputFolderError(f"cannot create the output folder {self.folder}: {err.strerror or err}") from None
        for _ in range(3):  # a takeover races with other takers at most a couple of times
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                self._handle_existing()
                continue
            except OSError as err:  # read-only file system, no permission, disk full
                raise OutputFolderError(f"cannot write in the output folder {self.folder}: {err.strerror or err}") from None
            self._write_record(fd)
            self.held = True
            return self
        raise OutputLockedError(f"could not take the lock {self.path} (other writers keep taking it)")

    def _write_record(self, fd: int) -> None:
        """Fill the lock just created; on a full disk (the file exists, its bytes do not fit) remove
        it again and say so in one line, rather than leave an empty lock that reads as torn."""
        try:
            with os.fdopen(fd, "w") as handle:
                handle.write(json.dumps(self.record))
                handle.flush()
        except OSError as err:
            self.path.unlink(missing_ok=True)
            raise OutputFolderError(
                f"cannot write the lock file {self.path}: {err.strerror or err}; free space on that file system "
                "or use another output folder"
            ) from None

    def _handle_existing(self) -> None:
        holder = self._read()
        if holder is None:
            return  # vanished or still being written: try again
        if holder.get("host") == self.record["host"] and holder.get("pid") == self.record["pid"]:
            raise OutputLockedError(f"{self.folder} is already locked by this process ({holder.get('what')})")
        if holder.get("host") == self.record["host"] and isinstance(holder.get("pid"), int):
            if not _alive(holder["pid"], holder.get("started_ticks")):
                logger.warning(
                    "%s: taking over the lock of a %s (pid %s, since %s) that is no longer running",
                    self.folder, holder.get("what", "writer"), holder["pid"], holder.get("since", "?"),
                )
                stale = self.path.with_name(f"{self.path.name}.stale.{os.getpid()}")
                with contextlib.suppress(FileNotFoundError):  # another taker won: retry
                    os.rename(self.path, stale)
                    stale.unlink(missing_ok=True)
                return
        where = "on this host" if holder.get("host") == self.record["host"] else f"on host {holder.get('host')}"
        hint = (
            "wait for it to finish or stop it"
            if holder.get("host") == self.record["host"]
            else f"if that job is gone (a shared filesystem cannot tell from here), delete {self.path}"
        )
        raise OutputLockedError(
            f"{self.folder} is in use by another {holder.get('what', 'writer')} (pid {holder.get('pid')} {where}, "
            f"since {holder.get('since', '?')}: {' '.join(map(str, holder.get('argv') or []))[:200]}). "
            f"Use another output folder, or {hint}"
        )

    def _read(self) -> dict[str, Any] | None:
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return None
        try:
            holder = json.loads(text)
        except ValueError:
            # torn write (the holder died between create and write): old enough means abandoned
            age = time.time() - self.path.stat().st_mtime if self.path.exists() else 0
            return {"what": "writer", "host": self.record["host"], "pid": -1} if age > 5 else None
        return holder if isinstance(holder, dict) else None

    def release(self) -> None:
        if not self.held:
            return
        holder = self._read()
        if holder and holder.get("pid") == self.record["pid"] and holder.get("host") == self.record["host"]:
            self.path.unlink(missing_ok=True)
        self.held = False

    def __enter__(self) -> OutputLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


@contextlib.contextmanager
def lock_output_for_job(folder: str | os.PathLike, what: str) -> Iterator[OutputLock | None]:
    """Own ``folder`` for a whole (possibly multi-process) job: rank 0 takes the lock, every rank
    learns the outcome, and all raise the same error when it is held elsewhere (no rank hangs)."""
    from lavis.common.dist import broadcast_object, get_rank

    lock, error = None, None
    if get_rank() == 0:
        lock = OutputLock(folder, what)
        try:
            lock.acquire()
        except (OutputLockedError, OutputFolderError) as err:
            error = (type(err).__name__, str(err))
    error = broadcast_object(error)
    if error is not None:
        kind = OutputFolderError if error[0] == OutputFolderError.__name__ else OutputLockedError
        raise kind(error[1])
    try:
        yield lock
    finally:
        if lock is not None:
            lock.release()
