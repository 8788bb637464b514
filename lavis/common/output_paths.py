"""Output paths a user names, checked before any work, and write failures in one line.

A directory given where a file goes (or a file where a folder goes), a folder on a read-only
mount or without permission: each is found at start, before a model is loaded or a slide is
read, instead of as a traceback at the end; and nothing is created by the check. What still
fails while writing (the disk fills up, a quota) is reported by :func:`os_error_text` as
``<file>: <reason>``.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from lavis.common.output_lock import OutputFolderError


def writable_folder(path: str | os.PathLike, what: str) -> Path:
    """``path`` as a folder this process can write in, or create; ``OutputFolderError`` if not.
    Nothing is created: a command refused later for another reason leaves no empty folder."""
    path = Path(path)
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent  # where the folder would be created
    if not existing.is_dir():
        raise OutputFolderError(f"{what} {path} is a file, not a folder; name a new or existing folder" if existing == path
                                else f"{what} {path}: {existing} is a file, not a folder")
    try:  # a read-only mount or a folder without write permission (root ignores the mode bits)
        fd, probe = tempfile.mkstemp(dir=existing, prefix=".write-test.")
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        where = f"the folder {path}" if existing == path else f"{existing} (where {path} would be created)"
        raise OutputFolderError(f"{what}: cannot write in {where}: {err.strerror or err}") from None
    return path


def writable_file(path: str | os.PathLike, what: str) -> Path:
    """``path`` as a file this process can create or replace; ``OutputFolderError`` if not (a
    directory or FIFO in its place, an unwritable folder)."""
    path = Path(path)
    if path.is_dir():
        raise OutputFolderError(f"{what} {path} is a directory; name a file (in it, or elsewhere)")
    if path.exists() and not path.is_file():
        raise OutputFolderError(f"{what} {path} is not a regular file (a FIFO or device); name a file")
    writable_folder(path.parent, what)
    return path


def os_error_text(err: OSError, path: str | os.PathLike | None = None) -> str:
    """One line for a failed write or read: ``<file>: <reason>`` (``path`` names the file when the
    error does not, as a failed ``write()`` on an open file)."""
    names = [name for name in (err.filename, err.filename2) if name] or ([path] if path else [])
    reason = err.strerror or str(err) or type(err).__name__
    return f"{' -> '.join(map(str, names))}: {reason}" if names else reason
