"""Read evaluation files that are either one JSON list or JSON lines, keeping where each record is.

The published files come in both layouts (LLaVA-Med ``test.json`` and QUILT's
``quiltvqa_test_w_ans.json`` are JSON lists; answer files are JSON lines), so every loader accepts
both and every error message can name the file and the item index or line number.
"""

from __future__ import annotations

import os
from typing import Any

from lavis.common.errors import DataError
from lavis.common.jsonio import iter_json_records


def read_records(path: str | os.PathLike) -> list[tuple[str, Any]]:
    """Return ``(location, record)`` pairs; location reads ``"<path>: item 3"`` or ``"<path>: line 4"``."""
    return [(record.where, record.value) for record in iter_json_records(path)]


def require_object(record: Any, where: str) -> dict:
    """The record itself must be a JSON object."""
    if not isinstance(record, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(record).__name__}")
    return record


def require_id(record: dict, key: str, where: str) -> int | str:
    """A question/image id: an int or a non-empty string (bools are JSON's true/false, not ids)."""
    if key not in record:
        raise DataError(f"{where}: field '{key}' is missing (expected an int or string id)")
    value = record[key]
    if isinstance(value, bool) or not isinstance(value, int | str) or value == "":
        raise DataError(f"{where}: field '{key}' must be an int or non-empty string id, got {value!r}")
    return value


def require_str(record: dict, key: str, where: str) -> str:
    """A text field that must be present and a string."""
    if key not in record:
        raise DataError(f"{where}: field '{key}' is missing (expected a string)")
    value = record[key]
    if not isinstance(value, str):
        raise DataError(f"{where}: field '{key}' must be a string, got {type(value).__name__}")
    return value


def id_key(question_id: int | str) -> str:
    """Ids are matched as text, so ``5`` in one file matches ``"5"`` in the other."""
    return str(question_id)


def read_texts_by_id(path: str | os.PathLike, id_field: str, text_field: str) -> dict[int | str, str]:
    """``{id: text}`` from a JSON list / JSON lines of objects (answer or caption files), each id once."""
    texts: dict[int | str, str] = {}
    ids = UniqueIds(id_field)
    for where, raw in read_records(path):
        item = require_object(raw, where)
        record_id = require_id(item, id_field, where)
        text = require_str(item, text_field, where)
        ids.add(record_id, where)
        texts[record_id] = text
    return texts


class UniqueIds:
    """Where each id of a file was first seen; a repeat is an error naming both places."""

    def __init__(self, field: str) -> None:
        self.field = field
        self._first: dict[str, str] = {}

    def add(self, value: int | str, where: str) -> None:
        key = id_key(value)
        if key in self._first:
            raise DataError(f"{where}: duplicate {self.field} {value!r} (first at {self._first[key]})")
        self._first[key] = where
