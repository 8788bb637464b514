"""Files a user names (configs, question and answer files, images, slides, weights) are checked
before they are opened: what is no regular file is refused at once, in one line.

Opening a FIFO for reading blocks until some process writes to it, so a named pipe given by
mistake (``mkfifo``, a shell's ``<(...)``) would hang a command forever; a device or socket is no
data file either, and a directory where a file is expected fails deep inside a library with a
message naming neither. ``file_problem`` says what is wrong without opening anything.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from lavis.common.errors import DataError


def file_problem(path: str | os.PathLike) -> str | None:
    """Why ``path`` is no regular file to read, or None when it is one."""
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return "file not found"
    except OSError as err:
        return f"cannot stat the file: {err.strerror or err}"
    if stat.S_ISDIR(mode):
        return "is a directory, not a file"
    if not stat.S_ISREG(mode):
        kind = "a FIFO (named pipe)" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode) else "a device"
        return f"not a regular file ({kind}); refused, since reading it could block"
    return None


def require_file(path: str | os.PathLike, what: str = "", error: type[Exception] = DataError) -> Path:
    """``path`` when it is a regular file; else ``error("<what> <path>: <why>")``."""
    problem = file_problem(path)
    if problem:
        raise error(f"{what + ' ' if what else ''}{path}: {problem}")
    return Path(path)
