"""QUILT-VQA evaluation (985 images, 1,283 questions) and its red-circle variant.

Two release forms:

- ``llava`` (the Quilt-LLaVA eval files): ``quiltvqa_test_wo_ans.jsonl`` lines
  ``{question_id, image, text}`` joined by id with ``quiltvqa_test_w_ans.json`` records
  ``{id, answer, answer_type, yes_no_answer}``; images under ``images/``. The red-circle set
  uses ``quiltvqa_red_test_wo_ans.jsonl`` / ``quiltvqa_red_test_w_ans.json`` and ``red_circle/``.
- ``parquet`` (HF ``wisdomik/Quilt_VQA`` / ``wisdomik/QuiltVQA_RED``): columns ``image``
  (struct of bytes/path), ``question``, ``answer``, ``answer_type``, ``context``; the question id
  is the row number and ``yes_no_answer`` is read from a closed answer's first word.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any, Literal

from lavis.common.errors import DataError
from lavis.common.jsonio import iter_json_lines
from lavis.datasets.annotations import data_file, field, read_json_list
from lavis.datasets.builders.base_builder import BaseBuilderConfig, register_builder
from lavis.datasets.builders.qa_rows import answer_type_of, qa_record, qa_table
from lavis.datasets.builders.table_builder import SplitTable, TableBuilder

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class QuiltVQAConfig(BaseBuilderConfig):
    format: Literal["llava", "parquet"] = "llava"
    questions: str = "quiltvqa_test_wo_ans.jsonl"
    answers: str = "quiltvqa_test_w_ans.json"
    image_dir: str = "images"
    # parquet form: file or glob under storage
    parquet: str = "data/*.parquet"
    # Name of the one split this evaluation set provides.
    split: str = "test"


@dataclasses.dataclass
class QuiltVQARedConfig(QuiltVQAConfig):
    questions: str = "quiltvqa_red_test_wo_ans.jsonl"
    answers: str = "quiltvqa_red_test_w_ans.json"
    image_dir: str = "red_circle"


def _answers_by_id(path: Path) -> dict[Any, dict[str, Any]]:
    answers: dict[Any, dict[str, Any]] = {}
    first_seen: dict[Any, int] = {}
    for number, record in enumerate(read_json_list(path), start=1):
        where = f"{path}: record {number}"
        key = field(record, "id", where, (int, str))
        if key in first_seen:
            raise DataError(f"{where}, field 'id': duplicate id {key!r} (first in record {first_seen[key]})")
        first_seen[key] = number
        answer = field(record, "answer", where)
        answer_type = answer_type_of(field(record, "answer_type", where), answer, where)
        yes_no = field(record, "yes_no_answer", where, required=False)
        if answer_type == "CLOSED" and yes_no is not None and yes_no.strip().lower() not in ("yes", "no"):
            raise DataError(f"{where}, field 'yes_no_answer': expected yes or no, got {yes_no!r}")
        answers[key] = {"answer": answer, "answer_type": answer_type, "yes_no": yes_no and yes_no.strip().lower()}
    return answers


def read_question_lines(questions: Path) -> list[tuple[Any, str, str, str]]:
    """(question id, image, question, where) per line of a ``{question_id, image, text}`` JSONL file
    (QUILT-VQA's ``*_wo_ans.jsonl``, LLaVA-Med's question files)."""
    rows = []
    for line in iter_json_lines(questions, objects=True):
        record, where = line.value, line.where
        qid = field(record, "question_id", where, (int, str))
        rows.append((qid, field(record, "image", where), field(record, "text", where), where))
    return rows


def read_llava_form(questions: Path, answers: Path) -> list[dict[str, Any]]:
    """Join the question JSONL with the answer JSON by id; every question needs its answer."""
    by_id = _answers_by_id(answers)
    rows = []
    for qid, image, question, where in read_question_lines(questions):
        if qid not in by_id:
            raise DataError(f"{where}, field 'question_id': {qid!r} has no record with that 'id' in {answers}")
        ref = by_id[qid]
        rows.append(qa_record(image, question, ref["answer"], qid, ref["answer_type"], ref["yes_no"], where=where))
    return rows


@register_builder("quilt_vqa")
class QuiltVQABuilder(TableBuilder):
    """QUILT-VQA as one evaluation split (``test`` by default)."""

    Config = QuiltVQAConfig
    DEFAULT_CONFIG = "datasets/quilt_vqa.yaml"

    def load_splits(self) -> dict[str, SplitTable]:
        root = self.root()
        key = f"datasets.{self.name}"
        if self.cfg.format == "parquet":
            return {self.cfg.split: self.parquet_qa_split(root, self.cfg.parquet, f"{key}.parquet")}
        questions = data_file(root, self.cfg.questions, f"{key}.questions")
        answers = data_file(root, self.cfg.answers, f"{key}.answers")
        rows = read_llava_form(questions, answers)
        return {self.cfg.split: SplitTable(qa_table(rows), root / self.cfg.image_dir, str(questions))}


@register_builder("quilt_vqa_red")
class QuiltVQARedBuilder(QuiltVQABuilder):
    """QUILT-VQA with red circles drawn around the region the question is about."""

    Config = QuiltVQARedConfig
    DEFAULT_CONFIG = "datasets/quilt_vqa_red.yaml"
