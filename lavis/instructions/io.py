"""Read caption tables (the Quilt-1M lookup CSV, or any CSV/JSONL with a caption and an image path).

Every record comes out as a plain dict with ``caption_id`` (stable for a given input row: the
``id`` column when present, else the 0-based data row), ``row``, ``image``, ``caption`` and the
metadata the template builder uses. Malformed rows raise ``DataError`` naming file, row and field.
"""

from __future__ import annotations

import ast
import csv
import os
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from lavis.common.errors import DataError
from lavis.common.jsonio import iter_json_lines, iter_json_list
from lavis.common.path_rules import check_under_root
from lavis.common.textio import open_utf8

IMAGE_FIELDS = ("image_path", "image")  # Quilt-1M spells it image_path, LLaVA-style files image
LIST_FIELDS = ("pathology", "roi_text", "med_umls_ids")  # Quilt stores these as Python list literals
SCALAR_FIELDS = ("subset", "split", "magnification", "stain", "height", "width", "single_wsi", "not_histology")
_MISSING = {"", "nan", "none", "null"}

csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # Quilt's noisy_text cells exceed the 128 KB default


def _where(path: Path, row: int, line: int | None) -> str:
    return f"{path}: row {row}" + (f" (line {line})" if line is not None else "")


def parse_list(value: Any, where: str, field: str) -> list[str]:
    """A Quilt list cell (``"['Breast', 'Skin']"``), a real list, or a bare value -> list of strings."""
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        items = list(value)
    elif isinstance(value, str):
        text = value.strip()
        if text.lower() in _MISSING or text == "[]":
            return []
        if text.startswith("["):
            try:
                items = ast.literal_eval(text)
            except (ValueError, SyntaxError):
                raise DataError(f"{where}: field '{field}' is not a valid list literal: {text[:80]!r}") from None
            if not isinstance(items, (list, tuple)):
                raise DataError(f"{where}: field '{field}' must be a list, got {text[:80]!r}")
        else:
            items = [text]
    else:
        items = [value]
    return [str(item).strip() for item in items if item is not None and str(item).strip()]


def _scalar(value: Any) -> Any:
    if value is None or (isinstance(value, str) and value.strip().lower() in _MISSING):
        return None
    return value.strip() if isinstance(value, str) else value


def _truthy(value: Any, where: str, field: str) -> bool:
    if value is None or isinstance(value, bool):
        return bool(value)
    text = str(value).strip().lower()
    if text in ("1", "1.0", "true", "yes"):
        return True
    if text in ("0", "0.0", "false", "no"):
        return False
    raise DataError(f"{where}: field '{field}' must be true/false or 1/0, got {value!r}")


def _as_set(values: str | Iterable[str] | None) -> set[str] | None:
    if values is None:
        return None
    items = [values] if isinstance(values, str) else list(values)
    return {part.strip().lower() for item in items for part in str(item).split(",") if part.strip()}


def _build_record(
    raw: dict[str, Any], where: str, index: int, caption_field: str, image_field: str | None
) -> dict[str, Any]:
    caption = raw.get(caption_field)
    if not isinstance(caption, str) or not caption.strip():
        raise DataError(f"{where}: field '{caption_field}' is missing or empty; expected the caption text")
    fields = [image_field] if image_field else [f for f in IMAGE_FIELDS if f in raw]
    image = raw.get(fields[0]) if fields else None
    if not isinstance(image, str) or not image.strip():
        wanted = image_field or " or ".join(IMAGE_FIELDS)
        raise DataError(f"{where}: field '{wanted}' is missing or empty; expected an image path")
    raw_id = raw.get("id")
    if raw_id is not None and str(raw_id).strip() == "":
        raise DataError(f"{where}: field 'id' is empty; expected a unique caption id")
    record: dict[str, Any] = {
        "caption_id": str(raw_id).strip() if raw_id is not None else str(index),
        "row": index,
        "image": image.strip(),
        "caption": " ".join(caption.split()),
    }
    for field in LIST_FIELDS:
        record[field] = parse_list(raw.get(field), where, field)
    for field in SCALAR_FIELDS:
        record[field] = _scalar(raw.get(field))
    attributes = raw.get("attributes")
    if attributes is not None:
        if not isinstance(attributes, dict):
            raise DataError(f"{where}: field 'attributes' must be a mapping of name -> value")
        record["attributes"] = {str(k): v for k, v in attributes.items()}
    return record


def _csv_rows(path: Path) -> Iterator[tuple[dict[str, Any], str]]:
    with open_utf8(path) as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None:
            raise DataError(f"{path}: empty file; expected a CSV header row")
        for index, row in enumerate(reader):
            where = _where(path, index, reader.line_num)
            if None in row:  # DictReader's restkey: more cells than header columns
                raise DataError(f"{where}: {len(reader.fieldnames) + len(row[None])} fields, header has {len(reader.fieldnames)}")
            short = [name for name, value in row.items() if value is None]
            if short:
                raise DataError(f"{where}: too few fields; missing value for field '{short[0]}'")
            yield row, where


def _jsonl_rows(path: Path) -> Iterator[tuple[dict[str, Any], str]]:
    for record in iter_json_lines(path, objects=True):
        yield record.value, _where(path, record.index, record.line)


def _json_array_rows(path: Path) -> Iterator[tuple[dict[str, Any], str]]:
    for record in iter_json_list(path, objects=True, expected="a JSON list of objects (or .jsonl, one object per line)"):
        yield record.value, record.where


def read_captions(
    path: str | os.PathLike,
    caption_field: str = "caption",
    subset: str | Iterable[str] | None = None,
    pathology: str | Iterable[str] | None = None,
    limit: int | None = None,
    split: str | Iterable[str] | None = None,
    image_field: str | None = None,
    histology_only: bool = False,
) -> list[dict[str, Any]]:
    """Caption records of a CSV or JSONL file, filtered by subset/split/pathology, then the first ``limit``.

    Filters are case-insensitive; each accepts one value, a comma-separated string or a list.
    A record passes ``pathology`` when any of its pathology labels matches. ``histology_only``
    drops rows that later Quilt-1M releases flag ``not_histology``.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: caption file not found")
    suffix = path.suffix.lower()
    rows = {".jsonl": _jsonl_rows, ".json": _json_array_rows}.get(suffix, _csv_rows)(path)
    subsets, splits, pathologies = _as_set(subset), _as_set(split), _as_set(pathology)
    records: list[dict[str, Any]] = []
    seen: dict[str, str] = {}
    found: dict[str, set[str]] = {"subset": set(), "split": set()}  # values met, for "matches nothing"
    for index, (raw, where) in enumerate(rows):
        record = _build_record(raw, where, index, caption_field, image_field)
        if record["caption_id"] in seen:
            raise DataError(f"{where}: field 'id' repeats {record['caption_id']!r} (first at {seen[record['caption_id']]})")
        seen[record["caption_id"]] = where
        for key, values in found.items():
            if len(values) < 50:
                values.add(str(record[key]))
        if subsets is not None and str(record["subset"] or "").lower() not in subsets:
            continue
        if splits is not None and str(record["split"] or "").lower() not in splits:
            continue
        if pathologies is not None and not pathologies & {p.lower() for p in record["pathology"]}:
            continue
        if histology_only and _truthy(record["not_histology"], where, "not_histology"):
            continue
        records.append(record)
        if limit is not None and len(records) >= limit:
            break
    if not records:
        chosen = {"--subset": subsets, "--split": splits, "--pathology": pathologies}
        asked = ", ".join(f"{flag} {','.join(sorted(v))}" for flag, v in chosen.items() if v is not None)
        if histology_only:
            asked += (", " if asked else "") + "--histology-only"
        met = "; ".join(f"{key} values in the file: {sorted(v)}" for key, v in found.items() if v - {"None"})
        raise DataError(
            f"{path}: no caption matches {asked}" + (f" ({met})" if met else "")
            if asked else f"{path}: the file holds no captions"
        )
    # image paths are relative to the data's image folder: one that leaves it is refused here, not
    # after paying for its instructions (the stage-2 builder would refuse it the same way)
    check_under_root([r["image"] for r in records], path.resolve().parent, image_field or " or ".join(IMAGE_FIELDS),
                     lambda i: _where(path, records[i]["row"], None))
    return records
