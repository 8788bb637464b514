"""Bad-data policy: an unreadable item becomes a ``SkippedSample`` instead of killing the run.

A data set returns ``SkippedSample(path, reason)`` in place of an item it cannot read (missing,
truncated or non-image file, decompression bomb). The collate drops it and reports it in
``batch["_skipped"]``; the runner counts those and stops past ``run.max_bad_samples``. With
``strict: true`` in the data set's section the same failure raises ``DataError`` instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lavis.common.errors import DataError

UNREADABLE_KEY = "unreadable"  # set on the record of a question scored as an empty answer: "path: reason"


@dataclass(frozen=True)
class SkippedSample:
    """Stands in for one item that could not be read; ``path`` says which file, ``reason`` why.

    ``fields`` holds the item's other values (question id, question, reference answer) where the
    data set knows them, and ``index`` its position (set by the runner's loader): evaluation uses
    both to account for every question, scoring an unreadable one as an empty answer on request.
    """

    path: str
    reason: str
    fields: dict[str, Any] | None = field(default=None, compare=False, repr=False)
    index: int | None = None

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


def skip_or_raise(path: str, reason: str, strict: bool) -> SkippedSample:
    """The one place that applies the strict flag: raise in strict mode, else a skip marker."""
    if strict:
        raise DataError(f"{path}: {reason} (strict mode: set strict: false to skip such samples)")
    return SkippedSample(path, reason)
