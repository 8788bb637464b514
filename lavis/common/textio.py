"""Open text files as UTF-8; a file in another encoding fails naming the file, line and byte.

A CSV saved by a spreadsheet in Latin-1 or Windows-1252 (an "é" in a caption) would otherwise
raise Python's ``UnicodeDecodeError`` from deep inside the csv module, naming neither the file
nor the line.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

from lavis.common.errors import DataError
from lavis.common.user_files import require_file

_SURROGATE = re.compile("[\ud800-\udfff]")  # undecodable bytes (surrogateescape) or a lone surrogate


def not_utf8_message(path: str | os.PathLike) -> str:
    """Where ``path`` stops being UTF-8: ``<path>: line N: not UTF-8 text (byte 0xe9 at column C,
    offset O) ...`` (O counts bytes from the start of the file)."""
    path = Path(path)
    offset = 0
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as err:
                return (
                    f"{path}: line {number}: not UTF-8 text (byte 0x{raw[err.start]:02x} at column {err.start + 1}, "
                    f"offset {offset + err.start}); save it as UTF-8, e.g. iconv -f latin1 -t utf-8 {path.name} "
                    f"> utf8_{path.name}"
                )
            offset += len(raw)
    return f"{path}: not UTF-8 text"


def check_text(text: str, what: str) -> str:
    """``text`` from the command line or a terminal, refused (``DataError``) when its bytes were
    not UTF-8: Python keeps such bytes as lone surrogates, which every tokenizer rejects."""
    found = _SURROGATE.search(text)
    if found:
        char = found.group()
        before = len(text[: found.start()].encode("utf-8"))
        byte = f"byte 0x{ord(char) - 0xDC00:02x}" if char >= "\udc80" else f"U+{ord(char):04X}"
        raise DataError(f"{what} is not UTF-8 text ({byte} at byte offset {before}); "
                        "set the terminal to UTF-8 or retype it")
    return text


@contextlib.contextmanager
def open_utf8(path: str | os.PathLike, newline: str | None = "") -> Iterator[TextIO]:
    """``open(path, encoding="utf-8", newline=newline)`` whose decoding errors become ``DataError``
    (``newline=""`` suits the csv module; None gives universal newlines); what is no regular file
    (a FIFO, a directory) is refused before it is opened."""
    require_file(path)
    try:
        with open(path, encoding="utf-8", newline=newline) as handle:
            yield handle
    except UnicodeDecodeError:
        raise DataError(not_utf8_message(path)) from None
