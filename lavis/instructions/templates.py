"""Template-based instructions: deterministic question/answer pairs from captions and metadata.

Per caption: a detailed-description prompt answered by the caption, then for every attribute of
the template bank that the record supports an open question and a closed yes/no question. Yes
and no are balanced per attribute over the whole input (alternating along a seeded order),
and every choice is drawn from a generator seeded by (seed, caption id), so the output is
byte-identical across runs and each caption's instructions do not depend on the input order.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import os
import random
import re
import string
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from lavis.common.errors import ConfigError, DataError
from lavis.common.textio import open_utf8
from lavis.instructions.yaml_files import load_typed_yaml

DEFAULT_BANK = "instructions/templates/default.yaml"
PLACEHOLDERS = {"value", "Value", "true_value"}


@dataclasses.dataclass
class OpenTemplates:
    questions: list[str]
    answers: list[str] = dataclasses.field(default_factory=lambda: ["{Value}."])


@dataclasses.dataclass
class ClosedTemplates:
    questions: list[str]
    yes_answers: list[str] = dataclasses.field(default_factory=lambda: ["Yes."])
    no_answers: list[str] = dataclasses.field(default_factory=lambda: ["No."])


@dataclasses.dataclass
class AttributeSpec:
    field: str | None = None  # record key; None: record["attributes"][<attribute name>]
    values: list[str] = dataclasses.field(default_factory=list)  # extra pool for "no" questions
    names: dict[str, str] = dataclasses.field(default_factory=dict)  # raw value -> words
    names_file: str | None = None  # more names: CSV/TSV (value,name) or UMLS MRCONSO.RRF
    names_required: bool = False  # drop values without a name
    join: str | None = None  # how several values read in one answer; None: "a, b and c"
    open: OpenTemplates | None = None
    closed: ClosedTemplates | None = None


@dataclasses.dataclass
class TemplateBank:
    version: str
    detailed_prompts: list[str]
    attributes: dict[str, AttributeSpec] = dataclasses.field(default_factory=dict)

    def validate(self) -> None:
        if not self.detailed_prompts:
            raise ConfigError("'detailed_prompts' must list at least one prompt")
        for name, spec in self.attributes.items():
            for kind, texts in _template_texts(spec):
                for text in texts:
                    used = {f for _, f, _, _ in string.Formatter().parse(text) if f is not None}
                    if used - PLACEHOLDERS:
                        raise ConfigError(
                            f"'attributes.{name}.{kind}': unknown placeholder {sorted(used - PLACEHOLDERS)} in {text!r}; "
                            f"use {sorted(PLACEHOLDERS)}"
                        )


def _template_texts(spec: AttributeSpec) -> list[tuple[str, list[str]]]:
    texts = []
    if spec.open:
        texts += [("open.questions", spec.open.questions), ("open.answers", spec.open.answers)]
    if spec.closed:
        texts += [("closed.questions", spec.closed.questions), ("closed.yes_answers", spec.closed.yes_answers), ("closed.no_answers", spec.closed.no_answers)]
    return texts


def load_value_names(path: str | os.PathLike) -> dict[str, str]:
    """Names for raw values: UMLS ``MRCONSO.RRF`` (English, preferred names first) or a 2-column CSV/TSV."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: names file not found")
    names: dict[str, str] = {}
    if path.suffix.upper() == ".RRF":
        preferred: set[str] = set()
        with open_utf8(path, newline=None) as handle:
            for line_no, line in enumerate(handle, start=1):
                cells = line.rstrip("\n").split("|")
                if len(cells) < 15:
                    raise DataError(f"{path}: line {line_no}: {len(cells)} fields, MRCONSO.RRF rows have 18")
                cui, language, term_status, is_pref, text = cells[0], cells[1], cells[2], cells[6], cells[14]
                if language != "ENG" or cui in preferred:
                    continue
                if term_status == "P" and is_pref == "Y":
                    names[cui] = text
                    preferred.add(cui)
                else:
                    names.setdefault(cui, text)
        return names
    delimiter = "\t" if path.suffix.lower() in (".tsv", ".tab") else ","
    with open_utf8(path) as handle:
        for row_no, row in enumerate(csv.reader(handle, delimiter=delimiter), start=1):
            if not row or (row_no == 1 and row[0].strip().lower() in ("cui", "id", "value")):
                continue
            if len(row) < 2 or not row[1].strip():
                raise DataError(f"{path}: row {row_no}: expected 2 fields 'value{delimiter}name'")
            names[row[0].strip()] = row[1].strip()
    return names


def load_template_bank(path: str | os.PathLike | None = None, names_files: dict[str, str] | None = None) -> TemplateBank:
    """Read a bank YAML; ``names_files`` (record field -> file) overrides ``names_file`` per field."""
    bank, file, _ = load_typed_yaml(TemplateBank, path, DEFAULT_BANK, "template bank")
    for spec in bank.attributes.values():
        source = (names_files or {}).get(spec.field or "", spec.names_file)
        if source:
            source_path = Path(source) if Path(source).is_absolute() else file.parent / source
            spec.names = {**load_value_names(source_path), **spec.names}
    return bank


def _canonical(value: Any) -> str:
    """``2``, ``2.0`` and ``"2"`` are the same value; strings keep their spelling."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = str(value).strip()
    return str(int(float(text))) if re.fullmatch(r"-?\d+\.0+", text) else text


def _values(record: dict[str, Any], name: str, spec: AttributeSpec) -> list[str]:
    """The record's values for an attribute, as display text (empty: the attribute is not supported)."""
    raw = record.get(spec.field) if spec.field else (record.get("attributes") or {}).get(name)
    if raw is None:
        return []
    items = raw if isinstance(raw, (list, tuple, set)) else [raw]
    texts = []
    for item in items:
        key = _canonical(item)
        if not key or key.lower() in ("nan", "none"):
            continue
        if key not in spec.names and spec.names_required:
            continue
        text = spec.names.get(key, key)
        if text not in texts:
            texts.append(text)
    return texts


def _join(values: list[str], joiner: str | None) -> str:
    if joiner is not None or len(values) < 2:
        return (joiner or "").join(values)
    return ", ".join(values[:-1]) + " and " + values[-1]


def _fill(template: str, value: str, true_value: str) -> str:
    return template.format(value=value, Value=value[:1].upper() + value[1:], true_value=true_value)


def _closed_plan(
    records: list[dict[str, Any]], name: str, spec: AttributeSpec, seed: int
) -> dict[str, tuple[bool, str]]:
    """caption_id -> (answer is yes, value asked about), balanced yes/no over the eligible records."""
    pool = {v.lower(): v for v in (spec.names.get(_canonical(x), _canonical(x)) for x in spec.values)}
    per_record = {r["caption_id"]: _values(r, name, spec) for r in records}
    for values in per_record.values():
        pool.update({v.lower(): v for v in values})
    ranked = sorted(pool.items(), key=lambda item: item[1])  # by value, as the false values are listed
    eligible = []
    for record in records:
        own = per_record[record["caption_id"]]
        own_keys = {x.lower() for x in own}
        false_values = [v for k, v in ranked if k not in own_keys]
        if own and false_values:
            eligible.append((record["caption_id"], own, false_values))
    # alternate yes/no along a seeded hash order of the ids: exactly balanced, and independent of
    # the order the records come in
    eligible.sort(key=lambda item: hashlib.sha256(f"{seed}:closed:{name}:{item[0]}".encode()).digest())
    plan = {}
    for index, (caption_id, own, false_values) in enumerate(eligible):
        yes = index % 2 == 0
        rng = random.Random(f"{seed}:closed:{name}:{caption_id}")
        plan[caption_id] = (yes, rng.choice(own) if yes else rng.choice(false_values))
    return plan


def build_template_instructions(
    records: Iterable[dict[str, Any]], seed: int, bank: TemplateBank | None = None
) -> list[dict[str, Any]]:
    """Template instructions for ``records`` (``caption_id, image, caption`` plus optional metadata)."""
    bank = bank or load_template_bank()
    records = list(records)
    plans = {name: _closed_plan(records, name, spec, seed) for name, spec in bank.attributes.items() if spec.closed}
    out: list[dict[str, Any]] = []
    for record in records:
        caption_id = str(record["caption_id"])
        rng = random.Random(f"{seed}:{caption_id}")
        base = {"image": record["image"], "caption": record["caption"], "caption_id": caption_id, "source": "template"}
        items = [(rng.choice(bank.detailed_prompts), record["caption"], "detailed", None)]
        for name, spec in bank.attributes.items():
            values = _values(record, name, spec)
            if not values:
                continue
            true_value = _join(values, spec.join)
            if spec.open:
                question = _fill(rng.choice(spec.open.questions), true_value, true_value)
                items.append((question, _fill(rng.choice(spec.open.answers), true_value, true_value), name, None))
            if caption_id in plans.get(name, {}):
                yes, asked = plans[name][caption_id]
                answer = rng.choice(spec.closed.yes_answers if yes else spec.closed.no_answers)  # type: ignore[union-attr]
                question = _fill(rng.choice(spec.closed.questions), asked, true_value)  # type: ignore[union-attr]
                items.append((question, _fill(answer, asked, true_value), name, "yes" if yes else "no"))
        for index, (question, answer, attribute, yes_no) in enumerate(items):
            out.append(
                {
                    "id": f"{caption_id}:t{index}",
                    "question": question,
                    "answer": answer,
                    **base,
                    "answer_type": "OPEN" if yes_no is None else "CLOSED",
                    "attribute": attribute,
                    **({} if yes_no is None else {"yes_no_answer": yes_no}),
                }
            )
    return out
