"""Read JSON documents, JSON lists and JSON lines, record by record, knowing where each record stands.

The one reader behind every JSON annotation, answer and record file. Each record comes with its
0-based position among the file's records, its 1-based line (JSON lines) and a ``where`` text
(``"<path>: line 4"`` or ``"<path>: item 3"``) for the caller's own messages. What the reader
itself refuses raises ``DataError`` naming the file, the line / item and what was wrong:

- ``<path>: line 3, column 12: invalid JSON (Expecting ',' delimiter)``
- ``<path>: line 2: expected a JSON object, got list`` / ``<path>: item 5: expected ...``
- ``<path>: line 7: not UTF-8 text (invalid start byte at byte 4 of the line)``
- ``<path>: not a regular file (a FIFO (named pipe)); refused, since reading it could block``

JSON lines are split on ``\\n`` only (the JSON Lines rule; ``\\r\\n`` works too), so text that
Python would also treat as a line break (U+2028 inside a string) stays inside its record.
Blank lines are skipped.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal, NamedTuple

from lavis.common.errors import DataError
from lavis.common.user_files import require_file

Layout = Literal["auto", "list", "lines"]


class JsonRecord(NamedTuple):
    """One record of a file: its value and where it stands."""

    value: Any
    index: int  # 0-based position among the file's records (blank lines not counted)
    line: int | None  # 1-based line of a JSON-lines record; None for an item of a JSON list
    where: str  # "<path>: line N" (JSON lines) or "<path>: item N" (0-based, JSON list)


def _invalid(path: Path, err: json.JSONDecodeError, first_line: int, expected: str | None) -> DataError:
    """``err`` from parsing text that starts at line ``first_line`` of ``path``."""
    hint = f"; expected {expected}" if expected else ""
    line = first_line + err.lineno - 1
    return DataError(f"{path}: line {line}, column {err.colno}: invalid JSON ({err.msg}){hint}")


def _check_object(value: Any, where: str) -> None:
    if not isinstance(value, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(value).__name__}")


def read_json(path: str | os.PathLike) -> Any:
    """The whole file as one JSON document."""
    path = require_file(path)
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise _invalid(path, err, 1, None) from None


def iter_json_list(
    path: str | os.PathLike, objects: bool = False, expected: str | None = None
) -> Iterator[JsonRecord]:
    """The items of a file holding one JSON list; ``objects`` requires each to be an object.

    ``expected`` names the layouts the caller accepts, for the message about a file that is not a list.
    """
    path = Path(path)
    data = read_json(path)
    if not isinstance(data, list):
        raise DataError(f"{path}: expected {expected or 'a JSON list'}, got {type(data).__name__}")
    for index, value in enumerate(data):
        where = f"{path}: item {index}"
        if objects:
            _check_object(value, where)
        yield JsonRecord(value, index, None, where)


def iter_json_lines(
    path: str | os.PathLike, objects: bool = False, expected: str | None = None
) -> Iterator[JsonRecord]:
    """One JSON value per line, read lazily; ``objects`` requires each to be an object.

    ``expected`` names the layouts the caller accepts, added to the message about a line that is
    not JSON.
    """
    path = require_file(path)
    index = 0
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                reason = f"{err.reason} at byte {err.start} of the line"
                raise DataError(f"{path}: line {number}: not UTF-8 text ({reason})") from None
            line = line.rstrip()  # so that an error at the end of the line points into it
            if not line:
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as err:
                raise _invalid(path, err, number, expected) from None
            where = f"{path}: line {number}"
            if objects:
                _check_object(value, where)
            yield JsonRecord(value, index, number, where)
            index += 1


def _starts_with_list(path: Path) -> bool:
    """Whether the first character that is not white space is ``[``."""
    require_file(path)
    with open(path, "rb") as handle:
        while chunk := handle.read(4096):
            content = chunk.lstrip()
            if content:
                return content.startswith(b"[")
    return False


def iter_json_records(
    path: str | os.PathLike, layout: Layout = "auto", objects: bool = False
) -> Iterator[JsonRecord]:
    """Records of a JSON list or JSON lines file; ``auto`` takes a file starting with ``[`` as a list."""
    path = Path(path)
    expected = None
    if layout == "auto":
        layout = "list" if _starts_with_list(path) else "lines"
        expected = "a single JSON list or one JSON object per line (JSON lines)"
    if layout == "list":
        return iter_json_list(path, objects, expected)
    return iter_json_lines(path, objects, expected)
