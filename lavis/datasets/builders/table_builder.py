"""Shared builder logic for file-based data sets: parse -> checked table -> ``SampleTable`` per split.

A subclass only parses its format into ``SplitTable``s (one per split); this class adds the
checks every data set needs (image paths stay under the root, question ids unique where they must
be, dense ``image_id`` per unique image) and wraps each table with its processors.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from lavis.common.errors import ConfigError, DataError
from lavis.datasets.annotations import ROW, check_unique, data_file, read_parquet
from lavis.datasets.builders.base_builder import BaseDatasetBuilder
from lavis.datasets.datasets.sample_table import IMAGE_BYTES, SampleTable
from lavis.datasets.image_io import check_under_root
from lavis.processors.base_processor import build_processor

logger = logging.getLogger(__name__)

QA_COLUMNS = ("image_path", "text_input", "text_output", "question_id", "answer", "answer_type", "yes_no_answer")
_CLOSED_TYPES = {"closed", "yes/no", "yes_no", "yesno"}
_OPEN_TYPES = {"open", "other"}


# Optional column saying where a row came from, for error messages; dropped at build (with ROW,
# the 1-based file row used where a string per row would cost too much: Quilt-1M).
WHERE = "_where"  # "file: line N" / "file: record N" of the record each question row came from


@dataclass
class SplitTable:
    """One split's parsed rows; ``source`` names the file(s), ``image_field`` the image column."""

    table: pa.Table
    image_root: Path | None
    source: str
    image_field: str = "image"

    def where(self, index: int) -> str:
        """Where table row ``index`` came from: ``"file: line N"`` or ``"file: row N"``."""
        if WHERE in self.table.column_names:
            return str(self.table.column(WHERE)[index].as_py())
        if ROW in self.table.column_names:
            return f"{self.source}: row {self.table.column(ROW)[index].as_py()}"
        return f"{self.source}: row {index + 1}"


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
    image_bytes: bytes | None = None,
    where: str | None = None,
) -> dict[str, Any]:
    """One question-answer row; ``text_output`` (training target) and ``answer`` (reference) agree.

    ``where`` ("file: line N") is kept for build-time error messages.
    """
    if yes_no_answer is None and answer_type == "CLOSED":
        yes_no_answer = yes_no_of(answer)
    record = {
        "image_path": image_path,
        "text_input": question,
        "text_output": answer,
        "question_id": question_id,
        "answer": answer,
        "answer_type": answer_type,
        "yes_no_answer": yes_no_answer,
        WHERE: where,
    }
    if image_bytes is not None:
        record[IMAGE_BYTES] = image_bytes
    return record


def qa_table(records: Sequence[Mapping[str, Any]]) -> pa.Table:
    """Rows from :func:`qa_record` as a table (question ids of mixed types become strings)."""
    columns = [*QA_COLUMNS, WHERE] + ([IMAGE_BYTES] if records and IMAGE_BYTES in records[0] else [])
    data = {name: [r.get(name) for r in records] for name in columns}
    if len({type(q) for q in data["question_id"]}) > 1:
        data["question_id"] = [str(q) for q in data["question_id"]]
    types = {IMAGE_BYTES: pa.binary()}
    return pa.table({name: pa.array(values, type=types.get(name, _guess(values))) for name, values in data.items()})


def _guess(values: list[Any]) -> pa.DataType:
    sample = next((v for v in values if v is not None), None)
    return pa.int64() if isinstance(sample, int) else pa.string()


def image_struct(table: pa.Table, column: str, label: str) -> tuple[list[bytes | None], list[str]]:
    """HF ``Image`` column (struct of ``bytes``/``path``) -> bytes and a content-keyed image_path.

    The path is ``"<stored name or file>#<content hash>"``: unique per image even when the stored
    name is missing or reused, so image ids and feature-cache keys follow the pixels.
    """
    struct = table.column(column)
    if not pa.types.is_struct(struct.type) or struct.type.get_field_index("bytes") < 0:
        raise DataError(f"{label}, field '{column}': expected an image struct with 'bytes', got {struct.type}")
    blobs = pc.struct_field(struct, "bytes").to_pylist()
    has_path = struct.type.get_field_index("path") >= 0
    names = pc.struct_field(struct, "path").to_pylist() if has_path else [None] * len(blobs)
    paths = []
    for row, (blob, name) in enumerate(zip(blobs, names)):
        if blob is None:
            raise DataError(f"{label}: row {row + 1}, field '{column}.bytes': missing image bytes")
        digest = hashlib.blake2b(blob, digest_size=8).hexdigest()
        paths.append(f"{name or Path(label).name}#{digest}")
    return blobs, paths


def read_parquet_qa(paths: list[Path]) -> list[dict[str, Any]]:
    """HF-style VQA parquet (``image`` struct, ``question``, ``answer``, optional ``answer_type``).

    Question ids are row numbers (0-based, over the files in order).
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
        rows.append(qa_record(image_paths[row], question, answer, row, answer_type, image_bytes=blobs[row], where=where))
    return rows


def with_image_ids(table: pa.Table) -> pa.Table:
    """Add ``image_id``: dense 0..n-1 per unique ``image_path`` in order of first appearance."""
    codes = pc.dictionary_encode(table.column("image_path")).combine_chunks().indices
    ids = pc.cast(codes, pa.int64())
    if "image_id" in table.column_names:
        table = table.drop_columns(["image_id"])
    return table.append_column("image_id", ids)


class TableBuilder(BaseDatasetBuilder):
    """Builds ``{split: SampleTable}`` from the ``SplitTable``s that ``load_splits`` parses."""

    def root(self) -> Path:
        if not self.cfg.storage:
            raise ConfigError(
                f"missing config key 'datasets.{self.name}.storage': set it to the folder that holds "
                f"the {self.name} files (see docs/datasets.md)"
            )
        root = Path(self.cfg.storage).expanduser()
        if not root.is_dir():
            raise ConfigError(f"config key 'datasets.{self.name}.storage': folder {root} does not exist")
        return root

    def load_splits(self) -> dict[str, SplitTable]:
        raise NotImplementedError  # abstract: each data set parses its own format

    def file_splits(
        self, read: Callable[[Path], list[dict[str, Any]]], image_field: str = "image"
    ) -> dict[str, SplitTable]:
        """For configs with ``files: {split: file}`` and ``image_dir``: one parsed file per split."""
        root = self.root()
        splits = {}
        for split, name in self.cfg.files.items():
            if name is None:  # null leaves a split of the defaults out
                continue
            path = data_file(root, name, f"datasets.{self.name}.files.{split}")
            splits[split] = SplitTable(qa_table(read(path)), root / self.cfg.image_dir, str(path), image_field)
        return splits

    def processor(self, which: str, kind: str) -> Any:
        specs = getattr(self.cfg, which) or {}
        return build_processor(specs.get(kind), f"datasets.{self.name}.{which}.{kind}")

    def check(self, split: str, data: SplitTable) -> pa.Table:
        table = data.table
        if IMAGE_BYTES not in table.column_names and data.image_root is not None:
            check_under_root(table.column("image_path"), data.image_root, data.image_field, data.where)
        if "question_id" in table.column_names:
            # Evaluation scores each question once by id: ids must be unique outside training.
            check_unique(table.column("question_id").to_pylist(), data.source, "question_id", split != "train")
        table = table.drop_columns([c for c in (WHERE, ROW) if c in table.column_names])
        return with_image_ids(table)

    def build(self) -> dict[str, SampleTable]:
        datasets = {}
        for split, data in self.load_splits().items():
            table = self.check(split, data)
            kind = "train" if split == "train" else "eval"
            datasets[split] = SampleTable(
                table,
                data.image_root,
                vis_processor=self.processor("vis_processor", kind),
                text_processor=self.processor("text_processor", kind),
                strict=self.cfg.strict,
                max_pixels=self.cfg.max_image_pixels,
            )
            logger.info("%s/%s: %d samples from %s", self.name, split, len(table), data.source)
        return datasets
