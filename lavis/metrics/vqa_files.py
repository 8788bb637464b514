"""VQA ground truth and answer files in their published layouts.

Ground truth comes in two shapes:

* LLaVA-Med test files: ``{id, image, conversations: [{from: human, value}, {from: gpt, value}],
  answer_type}``; some releases spell the key ``conversatons``. The answer is the second turn,
  as the reference script reads it.
* QUILT-VQA's ``quiltvqa_test_w_ans.json``: ``{id, answer, answer_type, yes_no_answer, ...}``.

Answer files are LLaVA-Med's JSON lines ``{question_id, prompt, text, ...}``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from lavis.common.errors import DataError
from lavis.common.llava_format import conversation_key as find_conversation_key
from lavis.metrics.closed import YES_NO
from lavis.metrics.normalize import normalize_strict
from lavis.metrics.records_io import (
    UniqueIds,
    read_records,
    read_texts_by_id,
    require_id,
    require_object,
    require_str,
)

# Quilt-LLaVA's script scores answer_type "other" as open; "OPEN"/"CLOSED" are the usual values.
_ANSWER_TYPES = {"OPEN": "OPEN", "CLOSED": "CLOSED", "other": "OPEN"}


@dataclass(frozen=True)
class VQARecord:
    """One evaluation question with its reference answer."""

    question_id: int | str
    question: str
    answer: str
    answer_type: str  # "OPEN" or "CLOSED"
    yes_no_answer: str | None = None


def load_ground_truth(path: str | os.PathLike) -> list[VQARecord]:
    """Read a LLaVA-Med test JSON or QUILT-VQA ``*_w_ans.json`` (JSON list or JSON lines)."""
    records: list[VQARecord] = []
    ids = UniqueIds("id")
    for where, raw in read_records(path):
        record = _parse_ground_truth(require_object(raw, where), where)
        ids.add(record.question_id, where)
        records.append(record)
    if not records:
        raise DataError(f"{path}: no questions found")
    return records


def load_predictions(path: str | os.PathLike) -> dict[int | str, str]:
    """Read a LLaVA-Med style answer file: one ``{question_id, text, ...}`` object per line."""
    return read_texts_by_id(path, "question_id", "text")


def answer_record(question_id: int | str, prompt: str, text: str, model_id: str,
                  metadata: dict | None = None) -> dict:
    """One line of a LLaVA-Med answer file (what ``evaluate.py`` and ``lavis.apps.predict`` write)."""
    return {"question_id": question_id, "prompt": prompt, "text": text, "answer_id": f"{question_id}",
            "model_id": model_id, "metadata": metadata or {}}


def _parse_ground_truth(item: dict, where: str) -> VQARecord:
    question_id = require_id(item, "id", where)
    conversation_key = find_conversation_key(item)
    if conversation_key is not None:
        question, answer = _conversation_turns(item[conversation_key], f"{where}: field '{conversation_key}'")
    elif "answer" in item:
        answer = require_str(item, "answer", where)
        question = next((item[key] for key in ("question", "text") if isinstance(item.get(key), str)), "")
    else:
        raise DataError(
            f"{where}: neither field 'conversations' (LLaVA-Med layout) nor 'answer' (QUILT-VQA layout) is present"
        )
    yes_no_answer = item.get("yes_no_answer")
    if yes_no_answer is not None and not isinstance(yes_no_answer, str):
        raise DataError(f"{where}: field 'yes_no_answer' must be a string or null, got {yes_no_answer!r}")
    answer_type = _answer_type(item.get("answer_type"), answer, where)
    if answer_type == "CLOSED" and yes_no_answer is not None and yes_no_answer.lower() not in ("yes", "no"):
        # it is the label closed questions are scored against: anything else would be scored as a miss
        raise DataError(f"{where}: field 'yes_no_answer' must be yes or no for a closed question, got {yes_no_answer!r}")
    return VQARecord(
        question_id=question_id,
        question=question,
        answer=answer,
        answer_type=answer_type,
        yes_no_answer=yes_no_answer,
    )


def _conversation_turns(turns: object, where: str) -> tuple[str, str]:
    """The question is the first turn and the answer the second, whatever their ``from`` says."""
    if not isinstance(turns, list) or len(turns) < 2:
        raise DataError(f"{where} must be a list of at least two turns (human question, gpt answer)")
    values = []
    for index in (0, 1):
        turn = turns[index]
        if not isinstance(turn, dict) or not isinstance(turn.get("value"), str):
            raise DataError(f"{where}[{index}] must be an object with a string 'value'")
        values.append(turn["value"])
    return values[0], values[1]


def _answer_type(value: object, answer: str, where: str) -> str:
    if value is None:  # not given: a bare yes/no reference is closed, anything else open
        return "CLOSED" if normalize_strict(answer) in YES_NO else "OPEN"
    if not isinstance(value, str) or value not in _ANSWER_TYPES:
        raise DataError(f"{where}: field 'answer_type' is {value!r}; expected 'OPEN' or 'CLOSED'")
    return _ANSWER_TYPES[value]
