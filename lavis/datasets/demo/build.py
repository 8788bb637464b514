"""Write the embedded demo data set in the real file formats, so the real builders read it.

    <out>/images/<split>/<tile>.png     split = train | val | test (separate image regions)
    <out>/quilt_1M_lookup.csv          Quilt-1M lookup layout (stage 1, builder ``quilt1m``)
    <out>/instructions.jsonl           generate_instructions.py layout (stage 2, ``clover_instructions``)
    <out>/instructions_val.jsonl       the same for the validation tiles (stage-2 checkpoint choice)
    <out>/language_corpus.jsonl        caption + question -> answer text the frozen LM is pretrained on
    <out>/quiltvqa_<split>_wo_ans.jsonl  QUILT-VQA evaluation layout (``quilt_vqa``), val and test
    <out>/quiltvqa_<split>_w_ans.json
    <out>/question_attributes.json     question id -> the attribute it asks about (val and test)
    <out>/question_wordings.json       question id -> "template" or "heldout" (val and test)
    <out>/demo_data.json               counts and the label and measurements of every tile

Captions are written from each tile's labels; questions and answers come from the template
instruction builder with ``configs/demo/templates.yaml``. Training asks half of its questions in
the template wordings (``source: template``) and half in the paraphrase grammar's
(``source: generated``, ``lavis/datasets/demo/wordings.py``); validation and test ask each of
their questions twice, in a template wording and in a wording held out from training (ids ending
``:w``). Validation serves development and checkpoint choice; the test files serve only the report.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import itertools
import json
import random
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

from lavis.common.checkpoint import atomic_write_text
from lavis.common.conversation import ConversationContract, Turn
from lavis.common.jsonio import read_json
from lavis.common.paths import config_path
from lavis.datasets.builders.quilt1m import QUILT_COLUMNS
from lavis.datasets.demo.tiles import SPLITS, TILE_PX, Tile, extract_tiles
from lavis.datasets.demo.wordings import Wordings, render_all, reword, split_wordings
from lavis.instructions.conversations import chain_into_conversations
from lavis.instructions.templates import TemplateBank, build_template_instructions, load_template_bank

FORMAT_VERSION = "clover-demo-v8"
ORGAN = {"cmu1_he": "Dermatopathology", "skimage_ihc": "Gastrointestinal"}
TISSUE = {"cmu1_he": "skin", "skimage_ihc": "colonic mucosa"}
ATTRIBUTES = ("tissue_fraction", "tissue_density", "stain", "magnification", "dab_staining")
HELDOUT_SUFFIX = ":w"  # question id of the held-out-wording copy of an evaluation question
GENERATED_SHARE = 0.5  # of the training units asked in a generated-style wording


@dataclasses.dataclass
class QuestionBudget:
    """How many evaluation questions each attribute gets in the val and test files."""

    closed_pairs: int = 40  # yes/no pairs per attribute (each pair shares one wording)
    open_tuples: int = 30  # open questions per attribute come in tuples, one per answer value
    detailed: int = 30  # describe-the-image questions


def caption_for(tile: Tile) -> str:
    """A short caption stating every label the tile has, in plain words."""
    return caption_from_labels(tile.labels, tile.source)


# how a caption states each label: "H&E stained skin at low magnification, dense tissue."
PHRASES = {"stain": "{} stained", "magnification": "at {} magnification", "tissue_fraction": "{} tissue fraction",
           "tissue_density": "{} tissue", "dab_staining": "{} DAB staining"}


def caption_from_labels(labels: dict[str, str], source: str) -> str:
    parts = [f"{PHRASES['stain'].format(labels['stain'])} {TISSUE[source]}"]
    if "magnification" in labels:
        parts[0] += " " + PHRASES["magnification"].format(labels["magnification"])
    parts += [PHRASES[a].format(labels[a]) for a in ("tissue_fraction", "tissue_density", "dab_staining") if a in labels]
    return ", ".join(parts) + "."


def value_texts(bank: TemplateBank | None = None) -> dict[str, dict[str, str]]:
    """attribute -> value -> the caption's phrase for it ("at low magnification."): the texts the
    image encoder's pretraining scores each tile against (lavis/apps/demo/pretrain_vision.py)."""
    bank = bank or load_template_bank(config_path("demo/templates.yaml"))
    return {name: {value: PHRASES[name].format(value) + "." for value in spec.values}
            for name, spec in bank.attributes.items()}


def language_corpus(tiles: list[Tile], bank: TemplateBank, generated: Wordings | None = None,
                    conversation: ConversationContract | None = None, seed: int = 0) -> list[dict[str, str]]:
    """The text the demo's language model is pretrained on: every caption the training tiles' label
    values can form (each attribute present or not) with every question the template bank asks
    about it, and every training wording of the paraphrase grammar (``generated``; never a held-out
    one), and its answer. Text only, no pixels: the model learns to read a caption and answer (an
    open value, a verdict that compares the asked value with the stated one) however the question
    is put, for every combination, not only those the training tiles happen to show. For a model
    tuned on conversations (``conversation`` multi-turn) every question also comes once after
    earlier turns about the same caption, folded by the model's own history format, so the frozen
    LM can read a conversation before stage 2 teaches the Q-Former to talk to it.
    """
    values: dict[str, dict[str, set[str]]] = {}
    for tile in tiles:
        for attribute, value in tile.labels.items():
            values.setdefault(tile.source, {}).setdefault(attribute, set()).add(value)
    corpus = []
    for source in sorted(values):
        seen = values[source]
        stain = sorted(seen.pop("stain"))
        names = sorted(seen)
        for stain_value in stain:
            for combo in itertools.product(*[[*sorted(seen[name]), None] for name in names]):
                labels = {"stain": stain_value, **{n: v for n, v in zip(names, combo) if v is not None}}
                caption = caption_from_labels(labels, source)
                detailed = [*bank.detailed_prompts, *(generated.detailed if generated else [])]
                corpus += [{"caption": caption, "question": q, "answer": caption, "attribute": "detailed"}
                           for q in detailed]
                examples = _questions_about(labels, caption, bank)
                if generated is not None:
                    examples += _generated_about(labels, caption, bank, generated)
                corpus += examples
                if conversation is not None and conversation.multi_turn:
                    corpus += _after_earlier_turns(examples, conversation, random.Random(f"{seed}:{caption}"))
    return corpus


def _after_earlier_turns(examples: list[dict[str, str]], conversation: ConversationContract,
                         rng: random.Random) -> list[dict[str, str]]:
    """Each example again after 1 to ``max_turns`` earlier questions about the same caption (other
    attributes' when there are; answers as the bank gives them), folded in the model's format."""
    out = []
    most = conversation.max_turns or 1
    attributes = {e["attribute"] for e in examples}
    others_of = {a: [e for e in examples if e["attribute"] != a] for a in attributes}
    for example in examples:
        others = others_of[example["attribute"]]
        if not others:
            continue  # a caption with one attribute: an earlier turn would be about the same thing
        history = [Turn(e["question"], e["answer"]) for e in rng.sample(others, min(len(others), rng.randint(1, most)))]
        out.append({**example, "question": conversation.fold(example["question"], history)})
    return out


def _generated_about(labels: dict[str, str], caption: str, bank: TemplateBank,
                     generated: Wordings) -> list[dict[str, str]]:
    """Every grammar wording about the labelled attributes, answered as the template bank answers."""
    out = []
    for attribute, spec in bank.attributes.items():
        true_value = labels.get(attribute)
        if true_value is None:
            continue
        answer = spec.open.answers[0].format(value=true_value, Value=true_value, true_value=true_value)
        for frame in generated.open.get(attribute, []) if spec.open else []:
            out += [{"caption": caption, "question": q, "answer": answer, "attribute": attribute}
                    for q in render_all(frame, spec.values)]
        for frame in generated.closed.get(attribute, []) if spec.closed else []:
            for asked in spec.values:
                verdict = spec.closed.yes_answers if asked == true_value else spec.closed.no_answers
                out += [{"caption": caption, "question": q, "answer": verdict[0].format(true_value=true_value),
                         "attribute": attribute} for q in render_all(frame, [asked])]
    return out


def _questions_about(labels: dict[str, str], caption: str, bank: TemplateBank) -> list[dict[str, str]]:
    def fill(template: str, value: str, true_value: str) -> str:
        return template.format(value=value, Value=value[:1].upper() + value[1:], true_value=true_value)

    out = []
    for attribute, spec in bank.attributes.items():
        true_value = labels.get(attribute)
        if true_value is None:
            continue
        for question, answer in itertools.product(spec.open.questions if spec.open else [],
                                                  spec.open.answers if spec.open else []):
            out.append({"caption": caption, "question": fill(question, true_value, true_value),
                        "answer": fill(answer, true_value, true_value), "attribute": attribute})
        if spec.closed is None:
            continue
        for question, asked in itertools.product(spec.closed.questions, spec.values):
            answers = spec.closed.yes_answers if asked == true_value else spec.closed.no_answers
            out += [{"caption": caption, "question": fill(question, asked, true_value),
                     "answer": fill(answer, asked, true_value), "attribute": attribute} for answer in answers]
    return out


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
                "magnification": labels.get("magnification"),
                "attributes": {k: labels[k] for k in ("tissue_fraction", "tissue_density", "dab_staining") if k in labels},
                "tile": tile,
            }
        )
    return records


def _stamp(settings: dict[str, Any]) -> str:
    """Changes whenever the settings, the question bank or the tile extraction change."""
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    for source in (config_path("demo/templates.yaml"), config_path("demo/wordings.yaml"),
                   Path(__file__).with_name("tiles.py"), Path(__file__).with_name("wordings.py"), Path(__file__)):
        digest.update(source.read_bytes())
    return digest.hexdigest()[:16]


def sample_covering(tiles: list[Any], n: int, seed: int) -> list[Any]:
    """``n`` of ``tiles`` at random, but every (attribute, value) label on a few of them first, so
    a small sample (quick runs) still asks about every attribute and both of its answers."""
    rng = random.Random(seed)
    shuffled = rng.sample(tiles, len(tiles))
    labels = sorted({(a, v) for t in tiles for a, v in t.labels.items()})
    per_label = max(1, n // (2 * max(1, len(labels))))
    chosen: dict[int, Any] = {}
    for attribute, value in labels:
        having = [t for t in shuffled if t.labels.get(attribute) == value]
        for tile in having[:per_label]:
            if len(chosen) < n:
                chosen[id(tile)] = tile
    for tile in shuffled:
        if len(chosen) >= n:
            break
        chosen.setdefault(id(tile), tile)
    return list(chosen.values())


def build_demo_data(
    out: str | Path,
    seed: int = 0,
    budget: QuestionBudget | None = None,
    max_tiles: int | None = None,
    train_per_attribute: int = 800,
    ask_magnification: bool = False,
    conversation: ConversationContract | None = None,
) -> dict:
    """Build (or reuse, when already built with the same settings) the demo data in ``out``. For a
    model tuned on conversations (``conversation`` multi-turn) each tile's training and validation
    instructions are chained into conversations of 2 to ``max_turns`` + 1 turns (``history``)."""
    out = Path(out)
    budget = budget or QuestionBudget()
    conversation = conversation or ConversationContract()
    settings = {"version": FORMAT_VERSION, "seed": seed, "budget": dataclasses.asdict(budget),
                "max_tiles": max_tiles, "train_per_attribute": train_per_attribute,
                "ask_magnification": ask_magnification, "conversation": conversation.as_dict()}
    stamp = _stamp(settings)
    info_file = out / "demo_data.json"
    if info_file.exists():
        info = read_json(info_file)
        if info.get("stamp") == stamp:
            return info

    # tiles of earlier settings would linger beside the new ones (and be offered as examples)
    shutil.rmtree(out / "images", ignore_errors=True)
    tiles = _split_tiles(extract_tiles(seed=seed, ask_magnification=ask_magnification))
    for split in SPLITS:
        if max_tiles is not None and len(tiles[split]) > max_tiles:
            tiles[split] = sample_covering(tiles[split], max_tiles, seed)
    bank = load_template_bank(config_path("demo/templates.yaml"))
    wordings = split_wordings(bank)
    values = {name: list(spec.values) for name, spec in bank.attributes.items()}
    records = {split: _records(tiles[split], split) for split in SPLITS}
    info: dict[str, Any] = {"stamp": stamp, **settings}
    attributes: dict[str, str] = {}
    kinds: dict[str, str] = {}
    for offset, split in enumerate(SPLITS):
        questions = build_template_instructions(records[split], seed=seed + offset, bank=bank)
        if split == "train":
            train = training_questions(questions, train_per_attribute, seed, generated=(wordings["generated"], values))
            train = _as_conversations(train, conversation, seed)
            _write_jsonl(out / "instructions.jsonl", train)
            _write_jsonl(out / "language_corpus.jsonl",
                         language_corpus(tiles["train"], bank, wordings["generated"], conversation, seed))
            info["train_instructions"] = Counter(q["attribute"] for q in train)
            info["train_instructions_by_source"] = Counter(q["source"] for q in train)
            continue
        if split == "val":  # the validation loss of stage 2 weighs the attributes as training does, in val wordings
            val = training_questions(questions, train_per_attribute // 4, seed, reuse=False,
                                     generated=(wordings["val"], values))
            _write_jsonl(out / "instructions_val.jsonl", _as_conversations(val, conversation, seed))
        chosen = sample_questions(questions, budget, seed, heldout=(wordings[split], values))
        _write_quilt_vqa(out, split, chosen)
        attributes.update({q["id"]: q["attribute"] for q in chosen})
        kinds.update({q["id"]: q["wording"] for q in chosen})
        info[f"{split}_questions"] = Counter(q["answer_type"] for q in chosen)
        info[f"{split}_questions_by_attribute"] = Counter(q["attribute"] for q in chosen)
        info[f"{split}_question_tiles"] = len({q["image"] for q in chosen})
        if split == "test":  # only the tiles questions are asked about are written
            asked = {q["image"] for q in chosen}
            records[split] = [r for r in records[split] if r["image"] in asked]
    rows, info_tiles = [], []
    for split in SPLITS:
        (out / "images" / split).mkdir(parents=True, exist_ok=True)
        for record in records[split]:
            tile = record.pop("tile")
            tile.image.save(out / "images" / record["image"], compress_level=1)
            rows.append(_quilt_row(record, split, tile))
            info_tiles.append({"image": record["image"], "split": split, "source": tile.source, "labels": tile.labels,
                               "stats": {k: round(v, 5) for k, v in tile.stats.items()},
                               "x": tile.x, "y": tile.y, "field_px": tile.field_px})
    write_csv(out / "quilt_1M_lookup.csv", rows)
    info["tiles"] = {split: len(records[split]) for split in SPLITS}
    atomic_write_text(out / "question_attributes.json", json.dumps(attributes, indent=0, sort_keys=True))
    atomic_write_text(out / "question_wordings.json", json.dumps(kinds, indent=0, sort_keys=True))
    info["labels"] = info_tiles
    atomic_write_text(info_file, json.dumps(info, indent=1))
    return info


def _as_conversations(questions: list[dict[str, Any]], conversation: ConversationContract, seed: int
                      ) -> list[dict[str, Any]]:
    """Single questions, or for a multi-turn model each tile's attribute questions chained into
    conversations in which no two turns ask about the same attribute, and descriptions alone: an
    earlier answer about the same attribute, or a description (the caption), would give the next
    answer away, and the model would learn to read the history instead of the image."""
    if not conversation.multi_turn:
        return questions
    seen: Counter = Counter()
    slotted = []
    for index, q in enumerate(questions):  # the k-th question of a tile about an attribute: the tile's slot k
        seen[(q["caption_id"], q["attribute"])] += 1
        slot = f"d{index}" if q["attribute"] == "detailed" else seen[(q["caption_id"], q["attribute"])]
        slotted.append({**q, "caption_id": f"{q['caption_id']}#{slot}"})
    chained = chain_into_conversations(slotted, turns=(2, (conversation.max_turns or 1) + 1), seed=seed)
    return [{**q, "caption_id": q["caption_id"].rsplit("#", 1)[0]} for q in chained]


def _split_tiles(tiles: list[Tile]) -> dict[str, list[Tile]]:
    return {split: [t for t in tiles if t.split == split] for split in SPLITS}


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
        "magnification": record["magnification"] or "",
        "height": TILE_PX,
        "width": TILE_PX,
    }


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    buffer = io.StringIO(newline="")  # no newline translation: the csv module's \r\n stays as is
    writer = csv.DictWriter(buffer, fieldnames=QUILT_COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buffer.getvalue())


def _write_jsonl(path: Path, records: list[dict[str, Any]]) -> None:
    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in records))


def _balanced_tuples(questions: list[dict[str, Any]], group: str, answer: str, seed: int,
                     reuse: bool = False) -> list[tuple]:
    """Questions of each ``group`` value dealt into tuples holding one of every ``answer`` value.

    Sampling whole tuples keeps every answer equally likely within a group, so the question
    alone (or the commonest label) never predicts the answer: a blind model scores chance. The
    tuples stop when the rarest answer runs out, or with ``reuse`` when the commonest does (the
    rarer answers' questions come round again, in a fresh order).
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
        length = max(map(len, by_answer)) if reuse else min(map(len, by_answer))
        columns = [_cycle(members, length, rng) for members in by_answer]
        tuples.extend(zip(*columns))
    return tuples


def _cycle(items: list[Any], length: int, rng: random.Random) -> list[Any]:
    """``length`` items: ``items`` in a shuffled order, again in a new order while more are needed."""
    out: list[Any] = []
    while len(out) < length:
        order = list(items)
        rng.shuffle(order)
        out += order
    return out[:length]


def training_questions(questions: list[dict[str, Any]], per_attribute: int, seed: int,
                       reuse: bool = True, generated: tuple[Wordings, dict[str, list[str]]] | None = None,
                       ) -> list[dict[str, Any]]:
    """Every detailed description and, per attribute, ``per_attribute`` questions: half closed in
    yes/no pairs sharing a wording, half open in tuples with one question per answer value.
    With ``generated`` (wordings, attribute values), ``GENERATED_SHARE`` of the units are asked in
    one of those wordings instead of the template's (``source: generated``).

    Tiles are unevenly labelled (a sixth of the H&E training tiles have a density label, a third
    of the IHC tiles are DAB-negative), so an attribute's questions come round again (``reuse``)
    until it is asked as often as any other and each answer as often as the other: stage 2 can
    then neither skip an attribute nor lean on a prior.
    """
    rng = random.Random(seed)
    reword_rng = random.Random(f"{seed}:generated")

    def worded(units: list[tuple]) -> list[dict[str, Any]]:
        out = []
        for unit in units:
            new = reword(unit, *generated, reword_rng) if generated and reword_rng.random() < GENERATED_SHARE else None
            out += [{**q, "source": "generated"} for q in new] if new else list(unit)
        return out

    chosen = worded([(q,) for q in questions if q["attribute"] == "detailed"])
    for attribute in ATTRIBUTES:
        asked = [q for q in questions if q["attribute"] == attribute]
        closed_pairs = _balanced_tuples([q for q in asked if q["answer_type"] == "CLOSED"], "question",
                                        "yes_no_answer", seed, reuse)
        open_tuples = _balanced_tuples([q for q in asked if q["answer_type"] == "OPEN"], "attribute", "answer",
                                       seed, reuse)
        for tuples in (closed_pairs, open_tuples):
            if not tuples:
                continue
            wanted = per_attribute // 2 // len(tuples[0])
            drawn = _cycle(tuples, wanted, rng) if reuse else rng.sample(tuples, min(wanted, len(tuples)))
            chosen += worded(drawn)
    return chosen


def sample_questions(questions: list[dict[str, Any]], budget: QuestionBudget, seed: int,
                     heldout: tuple[Wordings, dict[str, list[str]]] | None = None) -> list[dict[str, Any]]:
    """Evaluation questions per attribute: closed yes/no pairs sharing a wording, open tuples with
    one question per answer value, and a few detailed descriptions (the question never predicts
    the answer). Each is ``wording: template``; with ``heldout`` (wordings, attribute values) each
    unit is asked again in one held-out wording (``wording: heldout``, id + ``HELDOUT_SUFFIX``)."""
    rng = random.Random(seed)
    units: list[tuple] = []
    for attribute in ATTRIBUTES:
        asked = [q for q in questions if q["attribute"] == attribute]
        closed = [q for q in asked if q["answer_type"] == "CLOSED"]
        pairs = _balanced_tuples(closed, "question", "yes_no_answer", seed)
        units += rng.sample(pairs, min(len(pairs), budget.closed_pairs))
        open_ = [q for q in asked if q["answer_type"] == "OPEN"]
        groups = _balanced_tuples(open_, "attribute", "answer", seed)
        units += rng.sample(groups, min(len(groups), budget.open_tuples))
    detailed = [q for q in questions if q["attribute"] == "detailed"]
    units += [(q,) for q in rng.sample(detailed, min(len(detailed), budget.detailed))]
    chosen = [{**q, "wording": "template"} for unit in units for q in unit]
    reword_rng = random.Random(f"{seed}:heldout")
    for unit in units if heldout else []:
        new = reword(unit, *heldout, reword_rng)
        chosen += [{**q, "id": q["id"] + HELDOUT_SUFFIX, "wording": "heldout"} for q in new or []]
    return sorted(chosen, key=lambda q: q["id"])


def quilt_vqa_files(split: str) -> tuple[str, str]:
    """(questions, answers) file names of a split in the QUILT-VQA layout."""
    return f"quiltvqa_{split}_wo_ans.jsonl", f"quiltvqa_{split}_w_ans.json"


def _write_quilt_vqa(out: Path, split: str, questions: list[dict[str, Any]]) -> None:
    wo_ans = [{"question_id": q["id"], "image": q["image"], "text": q["question"]} for q in questions]
    w_ans = [
        {"id": q["id"], "answer": q["answer"], "answer_type": q["answer_type"],
         **({"yes_no_answer": q["yes_no_answer"]} if "yes_no_answer" in q else {})}
        for q in questions
    ]
    questions_file, answers_file = quilt_vqa_files(split)
    _write_jsonl(out / questions_file, wo_ans)
    atomic_write_text(out / answers_file, json.dumps(w_ans, indent=1))
