"""LLaVA-Med style conversation files: instruction data and PathVQA-style VQA test files.

A file is a JSON list of ``{id, image, conversations: [{from: human, value: "...<image>"},
{from: gpt, value}, ...], answer_type?}``; test files sometimes spell the key ``conversatons``.
Each (human, gpt) turn becomes one question/answer row carrying the earlier turns of its
conversation as ``history``: every answer of a conversation is trained once, with the reference
turns before it as context (teacher forcing, as LLaVA trains). A model tuned on conversations
(``model.conversation: multi_turn``) folds that history into its instruction; a single-turn model
reads each question alone. The ``<image>`` placeholder is removed from the question: the image
reaches the model through its own input.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

from lavis.common.errors import DataError
from lavis.common.llava_format import conversation_key  # the same spellings the scorer accepts
from lavis.datasets.annotations import field, read_json_list
from lavis.datasets.builders.base_builder import BaseBuilderConfig, register_builder
from lavis.datasets.builders.qa_rows import answer_type_of, qa_record
from lavis.datasets.builders.table_builder import SplitTable, TableBuilder

_IMAGE_TOKEN = re.compile(r"\s*<image>\s*")


@dataclasses.dataclass
class LlavaMedConfig(BaseBuilderConfig):
    # Split -> conversation JSON file under storage.
    files: dict[str, str | None] = dataclasses.field(
        default_factory=lambda: {"train": "llava_med_instruct_60k_inline_mention.json"}
    )
    image_dir: str = "images"


def strip_image_token(text: str) -> str:
    return _IMAGE_TOKEN.sub(" ", text).strip()


def conversation_pairs(record: Any, where: str) -> list[tuple[str, str]]:
    """(question, answer) per human turn and the gpt turn that follows it."""
    key = conversation_key(record) or "conversations"
    turns = field(record, key, where, list)
    pairs = []
    for index in range(0, len(turns), 2):
        human = turns[index]
        if index + 1 >= len(turns):
            raise DataError(f"{where}, field '{key}[{index}]': a human turn without the gpt answer after it")
        gpt = turns[index + 1]
        for position, turn, speaker in ((index, human, "human"), (index + 1, gpt, "gpt")):
            spoken = field(turn, "from", f"{where}, {key}[{position}]")
            if spoken != speaker:
                raise DataError(f"{where}, field '{key}[{position}].from': expected {speaker!r}, got {spoken!r}")
        question = strip_image_token(field(human, "value", f"{where}, {key}[{index}]"))
        answer = field(gpt, "value", f"{where}, {key}[{index + 1}]").strip()
        pairs.append((question, answer))
    if not pairs:
        raise DataError(f"{where}, field '{key}': empty conversation")
    return pairs


def read_conversations(path: Path) -> list[dict[str, Any]]:
    """QA rows of a conversation file; question ids are the record id (``id_k`` for turn k > 0)."""
    rows = []
    for number, record in enumerate(read_json_list(path), start=1):
        where = f"{path}: record {number}"
        image = field(record, "image", where)
        record_id = field(record, "id", where, (int, str), required=False)
        record_id = record_id if record_id is not None else number - 1
        declared = field(record, "answer_type", where, required=False)
        pairs = conversation_pairs(record, where)
        for turn, (question, answer) in enumerate(pairs):
            qid = record_id if turn == 0 else f"{record_id}_{turn}"
            rows.append(qa_record(image, question, answer, qid, answer_type_of(declared, answer, where), where=where,
                                  history=pairs[:turn]))
    return rows


@register_builder("llava_med")
class LlavaMedBuilder(TableBuilder):
    """One ``SampleTable`` per configured file (train: instructions; test: VQA with answer_type)."""

    Config = LlavaMedConfig
    DEFAULT_CONFIG = "datasets/llava_med.yaml"

    def load_splits(self) -> dict[str, SplitTable]:
        return self.file_splits(read_conversations)
