"""Question-answer rows shared by every VQA / instruction format, and the HF parquet VQA form.

Every question set becomes the same columns (``image_path, text_input, text_output,
question_id, answer, answer_type, yes_no_answer``) so that sets mix and evaluate alike; a turn
of a conversation also has ``history``, the earlier ``{question, answer}`` turns (oldest first),
which a model tuned on conversations folds into its instruction (``model.conversation``).
``answer_type`` is OPEN or CLOSED (declared, or CLOSED for a bare yes/no answer); for closed
questions ``yes_no_answer`` holds yes/no, read from the answer's first word unless given.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from lavis.common.errors import DataError
from lavis.datasets.annotations import WHERE, read_parquet
from lavis.datasets.datasets.sample_table import IMAGE_BYTES

QA_COLUMNS = ("image_path", "text_input", "text_output", "question_id", "answer", "answer_type", "yes_no_answer")
HISTORY = "history"
HISTORY_TYPE = pa.list_(pa.struct([("question", pa.string()), ("answer", pa.string())]))
_CLOSED_TYPES = {"closed", "yes/no", "yes_no", "yesno"}
_OPEN_TYPES = {"open", "other"}


def yes_no_of(answer: str | None) -> str | None:
    """'yes' or 'no' when the answer's first word is one of them (closed questions), else None."""
    words = (answer or "").lower().split(maxsplit=1)
    first = words[0].strip(".,;:!?") if words else ""
    return first if first in ("yes", "no") else None


def answer_type_of(declared: Any, answer: str | None, where: str) -> str:
    """Normalise a declared type (OPEN/CLOSED, yes/no/other) or infer it from a yes/no answer."""
    if declared is None or declared == "":
        return "CLOSED" if (answer or "").strip().lower().rstrip(".!") in ("yes", "no") else "OPEN"
    text = str(declared).strip().lower()
    if text in _CLOSED_TYPES:
        return "CLOSED"
    if text in _OPEN_TYPES:
        return "OPEN"
    raise DataError(f"{where}, field 'answer_type': expected OPEN or CLOSED (or yes/no, other), got {declared!r}")


def qa_record(
    image_path: str,
    question: str,
    answer: str,
    question_id: Any,
    answer_type: str | None,
    yes_no_answer: str | None = None,
    where: str | None = None,
    history: Sequence[tuple[str, str]] = (),
) -> dict[str, Any]:
    """One question-answer row; ``text_output`` (training target) and ``answer`` (reference) agree.

    ``where`` ("file: line N") is kept for build-time error messages; ``history``: the earlier
    (question, answer) turns of its conversation.
    """
    if yes_no_answer is None and answer_type == "CLOSED":
        yes_no_answer = yes_no_of(answer)
    return {
        HISTORY: [{"question": q, "answer": a} for q, a in history] or None,
        "image_path": image_path,
        "text_input": question,
        "text_output": answer,
        "question_id": question_id,
        "answer": answer,
        "answer_type": answer_type,
        "yes_no_answer": yes_no_answer,
        WHERE: where,
    }


def qa_table(records: Sequence[Mapping[str, Any]]) -> pa.Table:
    """Rows from :func:`qa_record` as a table (question ids of mixed types become strings)."""
    data = {name: [r.get(name) for r in records] for name in (*QA_COLUMNS, WHERE)}
    if len({type(q) for q in data["question_id"]}) > 1:
        data["question_id"] = [str(q) for q in data["question_id"]]
    columns = {name: pa.array(values, type=_guess(values)) for name, values in data.items()}
    histories = [r.get(HISTORY) for r in records]
    if any(histories):  # only conversations carry the column
        columns[HISTORY] = pa.array(histories, type=HISTORY_TYPE)
    return pa.table(columns)


def _guess(values: list[Any]) -> pa.DataType:
    sample = next((v for v in values if v is not None), None)
    return pa.int64() if isinstance(sample, int) else pa.string()


def image_struct(table: pa.Table, column: str, label: str) -> tuple[pa.Array, list[str]]:
    """HF ``Image`` column (struct of ``bytes``/``path``) -> the bytes (kept in Arrow) and paths.

    The path is ``"<stored name or file>#<content hash>"``: unique per image even when the stored
    name is missing or reused, so image ids and feature-cache keys follow the pixels.
    """
    struct = table.column(column).combine_chunks()
    if not pa.types.is_struct(struct.type) or struct.type.get_field_index("bytes") < 0:
        raise DataError(f"{label}, field '{column}': expected an image struct with 'bytes', got {struct.type}")
    blobs = pc.struct_field(struct, "bytes")
    has_path = struct.type.get_field_index("path") >= 0
    names = pc.struct_field(struct, "path").to_pylist() if has_path else [None] * len(blobs)
    paths = []
    for row, name in enumerate(names):
        blob = blobs[row]
        if not blob.is_valid:
            raise DataError(f"{label}: row {row + 1}, field '{column}.bytes': missing image bytes")
        digest = hashlib.blake2b(blob.as_buffer(), digest_size=8).hexdigest()  # no copy of the bytes
        paths.append(f"{name or Path(label).name}#{digest}")
    return blobs, paths


def read_parquet_qa(paths: list[Path]) -> pa.Table:
    """HF-style VQA parquet (``image`` struct, ``question``, ``answer``, optional ``answer_type``).

    Question ids are row numbers (0-based, over the files in order); the encoded images stay in
    an Arrow ``image_bytes`` column.
    """
    table = read_parquet(paths, ["image", "question", "answer"], ["answer_type"])
    label = str(paths[0]) if len(paths) == 1 else f"{paths[0].parent}/*.parquet"
    blobs, image_paths = image_struct(table, "image", label)
    questions, answers = table.column("question").to_pylist(), table.column("answer").to_pylist()
    declared = table.column("answer_type").to_pylist() if "answer_type" in table.column_names else [None] * len(answers)
    rows = []
    for row, (question, answer) in enumerate(zip(questions, answers)):
        where = f"{label}: row {row + 1}"
        for name, value in (("question", question), ("answer", answer)):
            if not isinstance(value, str) or not value.strip():
                raise DataError(f"{where}, field '{name}': missing or empty")
        answer_type = answer_type_of(declared[row], answer, where)
        rows.append(qa_record(image_paths[row], question, answer, row, answer_type, where=where))
    return qa_table(rows).append_column(IMAGE_BYTES, blobs)
