"""What ``lavis.apps.predict`` answers: a question file or a folder of images, as rows with image files.

Question files are read by the data-set readers, not parsed again here:

- QUILT-VQA ``quiltvqa_test_wo_ans.jsonl`` and LLaVA-Med question files, JSON lines
  ``{question_id, image, text}`` (:func:`lavis.datasets.builders.quilt_vqa.read_question_lines`);
- LLaVA-Med conversation files, a JSON list of ``{id, image, conversations: [...]}``
  (:func:`lavis.datasets.builders.llava_med.read_conversations`; the human turns are the questions).

Images are looked up under ``--image-dir``, else ``images/`` beside the file (QUILT-VQA's layout),
else beside the file; every image is checked before the first answer, so a typo fails at start.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from lavis.common.conversation import turns_of
from lavis.common.errors import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")


@dataclasses.dataclass(frozen=True)
class QuestionRow:
    question_id: Any
    image: Path  # the file
    image_name: str  # as the question file writes it
    question: str
    history: tuple = ()  # a conversation file's earlier turns (Turn), for a model tuned on conversations


def read_questions(path: str | os.PathLike, image_dir: str | os.PathLike | None = None) -> list[QuestionRow]:
    """Rows of a QUILT-VQA / LLaVA-Med question file, images resolved and checked."""
    from lavis.common.path_rules import check_under_root
    from lavis.common.user_files import require_file
    from lavis.datasets.annotations import WHERE, read_json_list
    from lavis.datasets.builders.llava_med import read_conversations
    from lavis.datasets.builders.quilt_vqa import read_question_lines

    path = require_file(path, "--questions")
    turns: dict = {}
    if path.suffix.lower() == ".jsonl":
        raw = read_question_lines(path)
    else:
        records = read_json_list(path)
        if records and isinstance(records[0], dict) and "question_id" in records[0]:
            raise DataError(f"{path}: records with 'question_id' are the JSON-lines layout; name the file .jsonl")
        conversations = read_conversations(path)
        turns = {r["question_id"]: tuple(turns_of(r["history"])) for r in conversations}
        raw = [(r["question_id"], r["image_path"], r["text_input"], r[WHERE]) for r in conversations]
    if not raw:
        raise DataError(f"{path}: no questions found")
    roots = [Path(image_dir)] if image_dir else [path.parent / "images", path.parent]
    # the builders' rule: image paths stay under the data folder (no '..', no absolute path elsewhere)
    check_under_root([name for _, name, _, _ in raw], roots[-1], "image", lambda i: raw[i][3])
    rows = []
    for qid, name, question, _ in raw:
        found = next((root / name for root in roots if (root / name).is_file()), None)
        if found is None:
            where = " or ".join(str(root) for root in roots)
            raise DataError(f"{path}: question {qid!r}: image '{name}' not found under {where} (set --image-dir)")
        rows.append(QuestionRow(qid, found, name, question, turns.get(qid, ())))
    return rows


def image_folder_rows(folder: str | os.PathLike, question: str) -> list[QuestionRow]:
    """One row per image file under ``folder`` (recursive, sorted); the id is the relative path."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"--images '{folder}': no such folder")
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DataError(f"--images '{folder}': no image files ({', '.join(IMAGE_SUFFIXES)})")
    return [QuestionRow(str(p.relative_to(folder)), p, str(p.relative_to(folder)), question) for p in files]
