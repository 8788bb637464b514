"""Evaluation accounts for every item of a split: no question silently leaves the denominator.

An image that cannot be read used to make its question vanish from the scores (3 of 29 dropped
moved closed accuracy from 50.00 to 52.94, exit 0). Now, per ``run.unreadable_eval_images``:
``error`` (default) stops the evaluation naming the files; ``empty_answer`` scores each such
question as an empty answer (counted, and wrong) and the metrics list them. Either way the
records handed to the task cover every item of the split exactly once.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from lavis.common.errors import DataError
from lavis.datasets.bad_data import UNREADABLE_KEY, SkippedSample


def merge_ranks(
    parts: Iterable[tuple[list[dict[str, Any]], list[SkippedSample]]],
) -> tuple[dict[int, dict[str, Any]], dict[int | None, SkippedSample]]:
    """Records and unreadable items of all ranks, one per dataset index (the distributed sampler
    pads with repeats)."""
    records: dict[int, dict[str, Any]] = {}
    unreadable: dict[int | None, SkippedSample] = {}
    for part_records, part_unreadable in parts:
        for record in part_records:
            records.setdefault(record["_index"], record)
        for sample in part_unreadable:
            unreadable.setdefault(sample.index, sample)
    return records, unreadable


def account_for_every_item(
    task: Any,
    label: str,
    records: dict[int, dict[str, Any]],
    unreadable: dict[int | None, SkippedSample],
    expected: int | None,
    policy: str,
) -> list[dict[str, Any]]:
    """The records in index order, unreadable items turned into empty answers (or an error).

    ``expected`` is the split's size (None for a stream, which cannot be checked).
    """
    if unreadable and policy == "error":
        shown = "; ".join(str(s) for s in list(unreadable.values())[:5])
        more = f" (and {len(unreadable) - 5} more)" if len(unreadable) > 5 else ""
        of = f" of {expected}" if expected is not None else ""
        raise DataError(
            f"{label}: {len(unreadable)}{of} evaluation images cannot be read, which would drop their questions "
            f"from the scores: {shown}{more}. Fix or remove them, or set run.unreadable_eval_images=empty_answer "
            "to score each as an empty answer (counted as wrong)"
        )
    without_answer = 0
    for index, sample in unreadable.items():
        if sample.fields is None or index is None:
            raise DataError(
                f"{label}: {sample} cannot be scored as an empty answer: the data set does not say which "
                "question it belongs to; fix or remove the file"
            )
        record = task.unreadable_record(dict(sample.fields))
        if record is None:  # the task scores no answers (validation loss): reported, not averaged
            without_answer += 1
            continue
        record["_index"], record[UNREADABLE_KEY] = index, str(sample)
        records[index] = record
    if expected is not None and len(records) + without_answer != expected:
        raise DataError(
            f"{label}: {expected - len(records) - without_answer} of {expected} items produced neither a "
            "record nor a report of an unreadable image"
        )
    return [records[i] for i in sorted(records)]
