"""Write the embedded demo data set in the real file formats, so the real builders read it.

    <out>/images/<split>/<tile>.png
    <out>/quilt_1M_lookup.csv          Quilt-1M lookup layout (stage 1, builder ``quilt1m``)
    <out>/instructions.jsonl           generate_instructions.py layout (stage 2, ``clover_instructions``)
    <out>/quiltvqa_test_wo_ans.jsonl   QUILT-VQA evaluation layout (``quilt_vqa``)
    <out>/quiltvqa_test_w_ans.json
    <out>/demo_data.json               counts and the label of every tile

Captions are written from each tile's labels; questions and answers come from the template
instruction builder with ``configs/demo/templates.yaml``.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import random
from collections import Counter
from pathlib import Path
from typing import Any

from lavis.common.checkpoint import atomic_write_text
from lavis.common.jsonio import read_json
from lavis.common.paths import config_path
from lavis.datasets.builders.quilt1m import QUILT_COLUMNS
from lavis.datasets.demo.tiles import Tile, extract_tiles
from lavis.instructions.templates import build_template_instructions, load_template_bank

FORMAT_VERSION = "clover-demo-v3"
ORGAN = {"cmu1_he": "Dermatopathology", "skimage_ihc": "Gastrointestinal"}
TISSUE = {"cmu1_he": "skin", "skimage_ihc": "colonic mucosa"}


def caption_for(tile: Tile) -> str:
    """A short caption stating every label the tile has, in plain words."""
    labels = tile.labels
    parts = [f"{labels['stain']} stained {TISSUE[tile.source]} at {labels['magnification']} magnification"]
    if "tissue_fraction" in labels:
        parts.append(f"{labels['tissue_fraction']} tissue fraction")
    if "tissue_density" in labels:
        parts.append(f"{labels['tissue_density']} tissue")
    if "dab_staining" in labels:
        parts.append(f"{labels['dab_staining']} DAB staining")
    return ", ".join(parts) + "."


def _balanced_test(tiles: list[Tile], per_group: int, seed: int) -> list[Tile]:
    """Cap test tiles per (source, density) group so no single label dominates the score."""
    rng = random.Random(seed)
    groups: dict[tuple, list[Tile]] = {}
    for tile in tiles:
        groups.setdefault((tile.source, tile.labels.get("tissue_density")), []).append(tile)
    kept = []
    for key in sorted(groups, key=str):
        members = groups[key]
        kept.extend(members if len(members) <= per_group else rng.sample(members, per_group))
    return kept


def _records(tiles: list[Tile], split: str) -> list[dict[str, Any]]:
    records = []
    for tile in tiles:
        name = f"{tile.source}_{tile.field_px}_{tile.y}_{tile.x}.png"
        labels = tile.labels
        records.append(
            {
                "caption_id": f"{split}/{name[:-4]}",
                "image": f"{split}/{name}",
                "caption": caption_for(tile),
                "pathology": [ORGAN[tile.source]],
                "stain": labels["stain"],
                "magnification": labels["magnification"],
                "attributes": {k: labels[k] for k in ("tissue_fraction", "tissue_density", "dab_staining") if k in labels},
                "tile": tile,
            }
        )
    return records


def build_demo_data(
    out: str | Path,
    seed: int = 0,
    test_per_group: int = 60,
    max_test_questions: int = 600,
    max_train_tiles: int | None = None,
) -> dict:
    """Build (or reuse, when already built with the same settings) the demo data in ``out``."""
    out = Path(out)
    settings = {"version": FORMAT_VERSION, "seed": seed, "test_per_group": test_per_group,
                "max_test_questions": max_test_questions, "max_train_tiles": max_train_tiles}
    bank_file = config_path("demo/templates.yaml")
    # Rebuild whenever the settings, the question bank or the tile extraction change.
    sources = [bank_file.read_bytes(), Path(__file__).with_name("tiles.py").read_bytes(), Path(__file__).read_bytes()]
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    for source in sources:
        digest.update(source)
    stamp = digest.hexdigest()[:16]
    info_file = out / "demo_data.json"
    if info_file.exists():
        info = read_json(info_file)
        if info.get("stamp") == stamp:
            return info

    tiles = extract_tiles(seed=seed)
    train = [t for t in tiles if t.split == "train"]
    if max_train_tiles is not None and len(train) > max_train_tiles:
        train = random.Random(seed).sample(train, max_train_tiles)
    test = _balanced_test([t for t in tiles if t.split == "test"], test_per_group, seed)
    bank = load_template_bank(bank_file)
    rows, info_tiles = [], []
    splits = {"train": _records(train, "train"), "test": _records(test, "test")}
    for split, records in splits.items():
        (out / "images" / split).mkdir(parents=True, exist_ok=True)
        for record in records:
            tile = record.pop("tile")
            tile.image.save(out / "images" / record["image"])
            rows.append(_quilt_row(record, split, tile))
            info_tiles.append({"image": record["image"], "split": split, "labels": tile.labels,
                               "x": tile.x, "y": tile.y, "field_px": tile.field_px})
    _write_csv(out / "quilt_1M_lookup.csv", rows)

    train_qa = balance_closed(build_template_instructions(splits["train"], seed=seed, bank=bank), seed)
    atomic_write_text(out / "instructions.jsonl", "".join(json.dumps(r) + "\n" for r in train_qa))
    test_qa = _sample_questions(build_template_instructions(splits["test"], seed=seed + 1, bank=bank),
                                max_test_questions, seed)
    _write_quilt_vqa(out, test_qa)

    info = {
        "stamp": stamp, **settings,
        "tiles": {s: len(r) for s, r in splits.items()},
        "train_instructions": len(train_qa),
        "test_questions": Counter(q["answer_type"] for q in test_qa),
        "test_closed_yes_no": Counter(q.get("yes_no_answer") for q in test_qa if q["answer_type"] == "CLOSED"),
        "labels": info_tiles,
    }
    atomic_write_text(info_file, json.dumps(info, indent=1))
    return info


def _quilt_row(record: dict[str, Any], split: str, tile: Tile) -> dict[str, Any]:
    return {
        "caption": record["caption"],
        "image_path": record["image"],
        "subset": "demo",
        "split": split,
        "pathology": str(record["pathology"]),
        "roi_text": "[]",
        "noisy_text": record["caption"],
        "corrected_text": record["caption"],
        "med_umls_ids": "[]",
        "magnification": record["magnification"],
        "height": tile.image.height,
        "width": tile.image.width,
    }


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    buffer = io.StringIO(newline="")  # no newline translation: the csv module's \r\n stays as is
    writer = csv.DictWriter(buffer, fieldnames=QUILT_COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buffer.getvalue())


def _balanced_tuples(questions: list[dict[str, Any]], group: str, answer: str, seed: int) -> list[tuple]:
    """Questions of each ``group`` value dealt into tuples holding one of every ``answer`` value.

    Sampling whole tuples keeps every answer equally likely within a group, so the question
    alone (or the commonest label) never predicts the answer: a blind model scores chance.
    """
    rng = random.Random(seed)
    groups: dict[str, dict[str, list[dict]]] = {}
    for q in questions:
        groups.setdefault(q[group], {}).setdefault(q[answer], []).append(q)
    tuples = []
    for key in sorted(groups):
        by_answer = [groups[key][value] for value in sorted(groups[key])]
        if len(by_answer) < 2:
            continue  # a group with one possible answer cannot be balanced
        for members in by_answer:
            rng.shuffle(members)
        tuples.extend(zip(*by_answer))
    return tuples


def balance_closed(questions: list[dict[str, Any]], seed: int) -> list[dict[str, Any]]:
    """All open questions, and the closed ones that pair up yes/no within their wording."""
    closed = [q for q in questions if q["answer_type"] == "CLOSED"]
    kept = {id(q) for pair in _balanced_tuples(closed, "question", "yes_no_answer", seed) for q in pair}
    return [q for q in questions if q["answer_type"] == "OPEN" or id(q) in kept]


def _sample_questions(questions: list[dict[str, Any]], limit: int, seed: int) -> list[dict[str, Any]]:
    """At most ``limit`` test questions: 2/3 closed (yes/no balanced per wording), 1/3 open
    (answers balanced per attribute; a few detailed descriptions among them)."""
    rng = random.Random(seed)
    closed = [q for q in questions if q["answer_type"] == "CLOSED"]
    pairs = _balanced_tuples(closed, "question", "yes_no_answer", seed)
    chosen = [q for pair in rng.sample(pairs, min(len(pairs), limit // 3)) for q in pair]
    open_ = [q for q in questions if q["answer_type"] == "OPEN"]
    labelled = [q for q in open_ if q["attribute"] != "detailed"]
    groups = _balanced_tuples(labelled, "attribute", "answer", seed)
    budget = limit - len(chosen)
    detailed = [q for q in open_ if q["attribute"] == "detailed"]
    chosen += rng.sample(detailed, min(len(detailed), budget // 6))
    room = (limit - len(chosen)) // 2
    chosen += [q for group in rng.sample(groups, min(len(groups), room)) for q in group]
    return sorted(chosen, key=lambda q: q["id"])


def _write_quilt_vqa(out: Path, questions: list[dict[str, Any]]) -> None:
    wo_ans = [{"question_id": q["id"], "image": q["image"], "text": q["question"]} for q in questions]
    w_ans = [
        {"id": q["id"], "answer": q["answer"], "answer_type": q["answer_type"],
         **({"yes_no_answer": q["yes_no_answer"]} if "yes_no_answer" in q else {})}
        for q in questions
    ]
    atomic_write_text(out / "quiltvqa_test_wo_ans.jsonl", "".join(json.dumps(r) + "\n" for r in wo_ans))
    atomic_write_text(out / "quiltvqa_test_w_ans.json", json.dumps(w_ans, indent=1))
