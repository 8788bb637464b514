"""CLOVER instruction data written by ``generate_instructions.py``.

``.jsonl`` files hold one record per line: ``{question, answer, image, caption, caption_id,
source: generated|template, answer_type?, history?}`` with ``image`` relative to the Quilt-1M
image folder; ``history`` (a turn of a conversation) lists the earlier ``{question, answer}`` turns
about the same image, oldest first. ``.json`` files are the LLaVA conversation export of the same
data (read like LLaVA-Med, each turn with its earlier turns).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from lavis.common.errors import DataError
from lavis.common.jsonio import iter_json_lines
from lavis.datasets.annotations import field
from lavis.datasets.builders.base_builder import BaseBuilderConfig, register_builder
from lavis.datasets.builders.llava_med import read_conversations, strip_image_token
from lavis.datasets.builders.qa_rows import answer_type_of, qa_record
from lavis.datasets.builders.table_builder import SplitTable, TableBuilder


@dataclasses.dataclass
class CloverInstructionsConfig(BaseBuilderConfig):
    # Split -> instructions file under storage (.jsonl records or .json LLaVA conversations).
    files: dict[str, str | None] = dataclasses.field(default_factory=lambda: {"train": "instructions.jsonl"})
    # Folder the records' 'image' paths are relative to (the Quilt-1M images).
    image_dir: str = "quilt_1m"
    # Keep only records whose 'source' is listed (generated, template); empty keeps all.
    sources: list[str] = dataclasses.field(default_factory=list)


def read_instructions(path: Path, sources: list[str]) -> list[dict[str, Any]]:
    """Instruction rows; the question id is ``<caption_id>/<line>`` (line when no caption_id)."""
    if path.suffix == ".json":
        return read_conversations(path)
    rows = []
    for line in iter_json_lines(path, objects=True):
        record, number, where = line.value, line.line, line.where
        source = field(record, "source", where, required=False)
        if sources and source not in sources:
            continue
        question = strip_image_token(field(record, "question", where))
        answer = field(record, "answer", where).strip()
        image = field(record, "image", where)
        caption_id = field(record, "caption_id", where, (str, int), required=False)
        declared = field(record, "answer_type", where, required=False)
        qid = f"{caption_id}/{number}" if caption_id is not None else str(number)
        history = history_of(field(record, "history", where, list, required=False), where)
        rows.append(qa_record(image, question, answer, qid, answer_type_of(declared, answer, where), where=where,
                              history=history))
    return rows


def history_of(turns: list | None, where: str) -> list[tuple[str, str]]:
    """(question, answer) per earlier turn of a record's ``history``; an empty list is no history."""
    out = []
    for i, turn in enumerate(turns or []):
        if not isinstance(turn, dict):
            raise DataError(f"{where}, field 'history[{i}]': expected {{question, answer}}, got {turn!r}")
        out.append((strip_image_token(field(turn, "question", f"{where}, history[{i}]")),
                    field(turn, "answer", f"{where}, history[{i}]").strip()))
    return out


@register_builder("clover_instructions")
class CloverInstructionsBuilder(TableBuilder):
    Config = CloverInstructionsConfig
    DEFAULT_CONFIG = "datasets/clover_instructions.yaml"

    def load_splits(self) -> dict[str, SplitTable]:
        return self.file_splits(lambda path: read_instructions(path, self.cfg.sources))
