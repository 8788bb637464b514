"""VQA scoring by question id: load the published file layouts, score under a protocol, summarise.

The command is ``python -m lavis.metrics.vqa`` (see ``__main__.py``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence

from lavis.common.checkpoint import atomic_write_text
from lavis.common.errors import DataError
from lavis.metrics.open_ended import OPEN_METRICS, OVERLAP_METRICS
from lavis.metrics.protocols import Protocol, get_protocol
from lavis.metrics.records_io import id_key
from lavis.metrics.vqa_files import VQARecord, load_ground_truth, load_predictions

__all__ = [
    "SUMMARY_KEYS",
    "IdMismatchError",
    "VQARecord",
    "load_ground_truth",
    "load_predictions",
    "summarize",
    "write_jsonl",
    "score",
]

# Summary name of each per-question open score ("recall" -> "open_recall").
_SUMMARY_NAME = {name: f"open_{name}" if name in OVERLAP_METRICS else name for name in OPEN_METRICS}
SUMMARY_KEYS = (*_SUMMARY_NAME.values(), "closed_accuracy", "num_open", "num_closed")
_SHOWN_IDS = 20


class IdMismatchError(DataError):
    """The prediction ids are not exactly the ground-truth ids; ``missing`` and ``extra`` list them."""

    def __init__(self, missing: list, extra: list) -> None:
        self.missing, self.extra = missing, extra
        parts = []
        if missing:
            parts.append(f"{len(missing)} question id(s) have no prediction: {_show(missing)}")
        if extra:
            parts.append(f"{len(extra)} prediction id(s) are not in the ground truth: {_show(extra)}")
        super().__init__("predictions do not match the ground truth: " + "; ".join(parts))


def _show(ids: list) -> str:
    shown = ", ".join(repr(question_id) for question_id in ids[:_SHOWN_IDS])
    more = f" and {len(ids) - _SHOWN_IDS} more" if len(ids) > _SHOWN_IDS else ""
    return f"[{shown}]{more}"


def _align(records: Sequence[VQARecord], predictions: Mapping[int | str, str]) -> list[str]:
    """Prediction text for each record, matched by id (ids compare as text), never by position."""
    by_key = {id_key(question_id): text for question_id, text in predictions.items()}
    if len(by_key) != len(predictions):
        raise DataError("predictions contain the same question id both as a number and as a string")
    wanted = {id_key(record.question_id) for record in records}
    if len(wanted) != len(records):
        raise DataError("the ground truth lists a question id more than once")
    missing = [record.question_id for record in records if id_key(record.question_id) not in by_key]
    extra = [question_id for question_id in predictions if id_key(question_id) not in wanted]
    if missing or extra:
        raise IdMismatchError(missing, extra)
    texts = [by_key[id_key(record.question_id)] for record in records]
    for record, text in zip(records, texts):
        if not isinstance(text, str):
            raise DataError(f"the prediction for question {record.question_id!r} is {text!r}, not a string")
    return texts


def score(
    records: Sequence[VQARecord], predictions: Mapping[int | str, str], protocol: str | Protocol
) -> tuple[dict, list[dict]]:
    """Score every question under ``protocol``; returns ``(summary, per_item)``.

    ``per_item`` follows the ground-truth order: open rows carry the open scores as fractions,
    closed rows ``hit`` (0/1) and ``counted`` (False only where ``llava_med_initial`` - the first
    published LLaVA-Med script - leaves the question out of the accuracy).
    """
    chosen = get_protocol(protocol)
    per_item = []
    for record, prediction in zip(records, _align(records, predictions)):
        row: dict = {"question_id": record.question_id, "answer_type": record.answer_type}
        if record.answer_type == "OPEN":
            row.update(chosen.score_open(prediction, record.answer))
        else:
            hit = chosen.score_closed(record, prediction)
            row.update(hit=hit or 0, counted=hit is not None)
        per_item.append(row)
    return summarize(per_item), per_item


def _percent_mean(values: list[float]) -> float | None:
    # Same arithmetic as the scripts (sum / len, then * 100) so results agree to the last bit.
    return sum(values) / len(values) * 100 if values else None


def summarize(per_item: Sequence[Mapping]) -> dict:
    """Average per-question rows into the summary (percent; ``None`` for a group with no questions)."""
    open_rows = [row for row in per_item if row["answer_type"] == "OPEN"]
    closed_rows = [row for row in per_item if row["answer_type"] == "CLOSED"]
    summary: dict = {
        _SUMMARY_NAME[name]: _percent_mean([row[name] for row in open_rows]) for name in OPEN_METRICS
    }
    counted_hits = [row["hit"] for row in closed_rows if row["counted"]]
    # The initial run_eval.py printed 0 when every closed question was dropped from its denominator.
    summary["closed_accuracy"] = (_percent_mean(counted_hits) or 0.0) if closed_rows else None
    summary["num_open"], summary["num_closed"] = len(open_rows), len(closed_rows)
    return summary


def write_jsonl(path: str | os.PathLike, rows: Sequence[Mapping]) -> None:
    """Write rows as JSON lines atomically (temp file, then rename)."""
    atomic_write_text(path, "".join(json.dumps(row) + "\n" for row in rows))
