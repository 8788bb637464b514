"""PathVQA (train 19,654 / val 6,259 / test 6,719 questions; about half yes/no).

Two release forms:

- ``parquet`` (HF ``flaviagiammarino/path-vqa``): ``data/{train,validation,test}-*.parquet``
  with ``image`` (struct of bytes/path), ``question``, ``answer``; question ids are row numbers.
- ``pickle`` (the original release): ``qas/<split>/<split>_qa.pkl`` lists of
  ``{image, question, answer}`` or ``qas/<split>_vqa.pkl`` lists of ``{img_id, sent,
  label: {answer: score}, answer_type, question_id}``; images at ``images/<split>/<img_id>.jpg``.

``answer_type`` is CLOSED for yes/no answers (or where the pickle says ``yes/no``), else OPEN.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Literal

from lavis.common.errors import DataError
from lavis.datasets.annotations import data_file, field, read_pickle
from lavis.datasets.builders.base_builder import BaseBuilderConfig, register_builder
from lavis.datasets.builders.qa_rows import answer_type_of, qa_record, qa_table
from lavis.datasets.builders.table_builder import SplitTable, TableBuilder

DEFAULT_FILES = {
    "parquet": {"train": "data/train-*.parquet", "val": "data/validation-*.parquet", "test": "data/test-*.parquet"},
    "pickle": {"train": "qas/train/train_qa.pkl", "val": "qas/val/val_qa.pkl", "test": "qas/test/test_qa.pkl"},
}


@dataclasses.dataclass
class PathVQAConfig(BaseBuilderConfig):
    format: Literal["parquet", "pickle"] = "parquet"
    # Split -> file (pickle) or glob (parquet) under storage; null uses the release layout.
    files: dict[str, str | None] | None = None
    # Pickle form: images of split S are under <image_dir>/S/<img_id>.jpg.
    image_dir: str = "images"


def _best_label(labels: Any, where: str) -> str:
    if not isinstance(labels, dict) or not labels:
        raise DataError(f"{where}, field 'label': expected a non-empty {{answer: score}} mapping, got {labels!r}")
    return str(max(labels.items(), key=lambda item: item[1])[0])


def read_pickle_split(path: Path) -> list[dict[str, Any]]:
    records = read_pickle(path)
    if not isinstance(records, list):
        raise DataError(f"{path}: expected a list of question records, got {type(records).__name__}")
    rows = []
    for number, record in enumerate(records, start=1):
        where = f"{path}: record {number}"
        if isinstance(record, dict) and "sent" in record:  # *_vqa.pkl
            image = field(record, "img_id", where)
            question = field(record, "sent", where)
            answer = _best_label(record.get("label"), where)
            qid = field(record, "question_id", where, (int, str), required=False)
            declared = field(record, "answer_type", where, required=False)
        else:  # <split>_qa.pkl
            image = field(record, "image", where)
            question = field(record, "question", where)
            answer = str(field(record, "answer", where, (str, int, float)))
            qid, declared = None, None
        qid = number - 1 if qid is None else qid
        image_file = image if Path(image).suffix else f"{image}.jpg"
        rows.append(qa_record(image_file, question, answer, qid, answer_type_of(declared, answer, where), where=where))
    return rows


@register_builder("pathvqa")
class PathVQABuilder(TableBuilder):
    Config = PathVQAConfig
    DEFAULT_CONFIG = "datasets/pathvqa.yaml"

    def load_splits(self) -> dict[str, SplitTable]:
        root = self.root()
        files = self.cfg.files or DEFAULT_FILES[self.cfg.format]
        splits = {}
        for split, pattern, key in self.split_files(files):
            if self.cfg.format == "parquet":
                splits[split] = self.parquet_qa_split(root, pattern, key)
            else:
                path = data_file(root, pattern, key)
                table = qa_table(read_pickle_split(path))
                splits[split] = SplitTable(table, root / self.cfg.image_dir / split, str(path))
        return splits
