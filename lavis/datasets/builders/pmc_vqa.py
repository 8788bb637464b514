"""PMC-VQA multiple choice: CSV ``Figure_path, Question, Answer, Choice A..D, Answer_label``.

The question shown to the model carries the four choices (``"<question> A: ... B: ... C: ...
D: ..."``; the release writes choices as ``" A:Left Anterior Descending "``, the letter prefix is
normalised). The reference ``answer`` is the choice letter (``answer_style: letter``, what the
PMC-VQA accuracy scores) or the answer text (``answer_style: text``). Multiple choice is neither
of the OPEN/CLOSED protocols, so ``answer_type`` is None: score it by exact match of the letter.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any, Literal

from lavis.common.errors import DataError
from lavis.datasets.annotations import read_csv, require_non_null
from lavis.datasets.builders.base_builder import BaseBuilderConfig, register_builder
from lavis.datasets.builders.qa_rows import qa_record
from lavis.datasets.builders.table_builder import SplitTable, TableBuilder

LETTERS = ("A", "B", "C", "D")
CHOICE_COLUMNS = tuple(f"Choice {letter}" for letter in LETTERS)
COLUMNS = ("Figure_path", "Question", "Answer", *CHOICE_COLUMNS, "Answer_label")


@dataclasses.dataclass
class PMCVQAConfig(BaseBuilderConfig):
    # Split -> CSV under storage (the release also has train_2.csv, test_2.csv, test_clean.csv).
    files: dict[str, str | None] = dataclasses.field(default_factory=lambda: {"train": "train.csv", "test": "test.csv"})
    image_dir: str = "images"
    answer_style: Literal["letter", "text"] = "letter"


def _choice_text(letter: str, value: str) -> str:
    """' A:Left Anterior Descending ' -> 'Left Anterior Descending'."""
    return re.sub(rf"^\s*{letter}\s*[:.)]\s*", "", value).strip()


def read_pmc_csv(path: Path, answer_style: str) -> list[dict[str, Any]]:
    table = read_csv(path, COLUMNS)
    for column in ("Figure_path", "Question", "Answer_label", *CHOICE_COLUMNS):
        require_non_null(table, column, str(path))
    columns = {name: table.column(name).to_pylist() for name in COLUMNS}
    rows = []
    for row in range(table.num_rows):
        where = f"{path}: row {row + 1}"
        label = columns["Answer_label"][row].strip().upper()
        if label not in LETTERS:
            raise DataError(f"{where}, field 'Answer_label': expected one of A-D, got {label!r}")
        choices = " ".join(f"{c}: {_choice_text(c, columns[f'Choice {c}'][row])}" for c in LETTERS)
        question = f"{columns['Question'][row].strip()} {choices}"
        text = columns["Answer"][row] or _choice_text(label, columns[f"Choice {label}"][row])
        answer = label if answer_style == "letter" else text.strip()
        rows.append(qa_record(columns["Figure_path"][row], question, answer, row, None, where=where))
    return rows


@register_builder("pmc_vqa")
class PMCVQABuilder(TableBuilder):
    Config = PMCVQAConfig
    DEFAULT_CONFIG = "datasets/pmc_vqa.yaml"

    def load_splits(self) -> dict[str, SplitTable]:
        return self.file_splits(lambda path: read_pmc_csv(path, self.cfg.answer_style), image_field="Figure_path")
