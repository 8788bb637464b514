"""``raw.jsonl``: the append-only record of generation, one line per finished caption id.

A caption's line is written (one ``write`` + flush) only after its reply is handled, so a crash
or Ctrl-C loses at most the requests in flight. On reopening, a torn last line from a killed
process is cut off and the ids already present are skipped, so no id is ever written twice.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from lavis.common.errors import DataError
from lavis.common.jsonio import iter_json_lines

logger = logging.getLogger("lavis.instructions")


def repair_tail(path: Path) -> int:
    """Cut an incomplete last line (no trailing newline) left by a killed writer; bytes removed."""
    if not path.exists() or path.stat().st_size == 0:
        return 0
    with open(path, "rb+") as handle:
        size = handle.seek(0, os.SEEK_END)
        handle.seek(max(0, size - 1))
        if handle.read(1) == b"\n":
            return 0
        keep, chunk = 0, 1 << 16
        position = size
        while position > 0:  # scan backwards for the last complete line
            start = max(0, position - chunk)
            handle.seek(start)
            block = handle.read(position - start)
            newline = block.rfind(b"\n")
            if newline >= 0:
                keep = start + newline + 1
                break
            position = start
        handle.truncate(keep)
        return size - keep


def read_records(path: Path) -> list[dict[str, Any]]:
    """Every record of a raw.jsonl file in file order; a malformed line is an error naming it."""
    if not path.exists():
        return []
    records = []
    for record in iter_json_lines(path, expected="one object per line; fix or remove that line"):
        if not isinstance(record.value, dict) or "caption_id" not in record.value:
            raise DataError(f"{record.where}: expected an object with field 'caption_id'")
        records.append(record.value)
    return records


class RawStore:
    """Opens ``raw.jsonl`` for resuming: repairs the tail, indexes finished ids, appends new ones."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        cut = repair_tail(self.path)
        if cut:
            logger.warning("%s: removed an incomplete last line (%d bytes) left by an interrupted run", self.path, cut)
        self.records: dict[str, dict[str, Any]] = {}
        for record in read_records(self.path):
            key = str(record["caption_id"])
            if key in self.records:
                logger.warning("%s: caption id %r appears twice; keeping the first", self.path, key)
                continue
            self.records[key] = record
        self._handle = open(self.path, "a", encoding="utf-8")

    def __contains__(self, caption_id: str) -> bool:
        return caption_id in self.records

    def append(self, record: dict[str, Any]) -> None:
        key = str(record["caption_id"])
        if key in self.records:
            raise ValueError(f"caption id {key!r} is already in {self.path}")
        self._handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._handle.flush()
        self.records[key] = record

    def close(self) -> None:
        self._handle.close()

    def __enter__(self) -> RawStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
