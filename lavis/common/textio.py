"""Open text files as UTF-8; a file in another encoding fails naming the file, line and byte.

A CSV saved by a spreadsheet in Latin-1 or Windows-1252 (an "é" in a caption) would otherwise
raise Python's ``UnicodeDecodeError`` from deep inside the csv module, naming neither the file
nor the line.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

from lavis.common.errors import DataError


def not_utf8_message(path: str | os.PathLike) -> str:
    """Where ``path`` stops being UTF-8: ``<path>: line N: not UTF-8 text (byte 0xe9 at column C) ...``."""
    path = Path(path)
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as err:
                return (
                    f"{path}: line {number}: not UTF-8 text (byte 0x{raw[err.start]:02x} at column {err.start + 1}); "
                    f"save it as UTF-8, e.g. iconv -f latin1 -t utf-8 {path.name} > utf8_{path.name}"
                )
    return f"{path}: not UTF-8 text"


@contextlib.contextmanager
def open_utf8(path: str | os.PathLike, newline: str | None = "") -> Iterator[TextIO]:
    """``open(path, encoding="utf-8", newline=newline)`` whose decoding errors become ``DataError``
    (``newline=""`` suits the csv module; None gives universal newlines)."""
    try:
        with open(path, encoding="utf-8", newline=newline) as handle:
            yield handle
    except UnicodeDecodeError:
        raise DataError(not_utf8_message(path)) from None
