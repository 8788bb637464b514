"""Template-based instructions: determinism, exact yes/no balance, metadata-backed answers only."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from lavis.common.errors import ConfigError
from lavis.instructions.io import read_captions
from lavis.instructions.templates import build_template_instructions, load_template_bank, load_value_names


def demo_records(n: int = 40) -> list[dict]:
    """Records like the embedded demo data set's: image-derived attributes, stain, organ."""
    return [
        {
            "caption_id": f"d{i}",
            "image": f"demo/{i}.png",
            "caption": f"Demo tile {i}.",
            "stain": "H&E" if i % 3 else "IHC",
            "pathology": ["Breast"] if i % 2 else ["Lung"],
            "attributes": {"tissue_density": "dense" if i % 4 < 2 else "loose", "tissue_fraction": "high" if i % 5 else "low"},
        }
        for i in range(n)
    ]


def test_detailed_prompt_answered_by_the_caption():
    items = build_template_instructions(demo_records(5), seed=0)
    detailed = [i for i in items if i["attribute"] == "detailed"]
    bank = load_template_bank()
    assert len(detailed) == 5
    for item, record in zip(detailed, demo_records(5)):
        assert item["question"] in bank.detailed_prompts
        assert item["answer"] == record["caption"] and item["image"] == record["image"]
        assert item["source"] == "template" and item["answer_type"] == "OPEN"


def test_open_answers_state_the_record_value():
    records = demo_records(12)
    by_id = {r["caption_id"]: r for r in records}
    for item in build_template_instructions(records, seed=3):
        record = by_id[item["caption_id"]]
        if item["answer_type"] == "OPEN" and item["attribute"] == "tissue_density":
            assert record["attributes"]["tissue_density"] in item["answer"]
        if item["answer_type"] == "OPEN" and item["attribute"] == "stain":
            assert record["stain"] in item["answer"]


@pytest.mark.parametrize("attribute", ["tissue_density", "tissue_fraction", "stain", "organ"])
def test_closed_questions_are_balanced_and_truthful(attribute):
    records = demo_records(41)
    by_id = {r["caption_id"]: r for r in records}
    closed = [i for i in build_template_instructions(records, seed=7) if i["answer_type"] == "CLOSED" and i["attribute"] == attribute]
    assert len(closed) == 41  # every record has a value and a false alternative exists
    counts = Counter(i["yes_no_answer"] for i in closed)
    assert abs(counts["yes"] - counts["no"]) <= 1
    for item in closed:
        record = by_id[item["caption_id"]]
        truth = {
            "tissue_density": [record["attributes"]["tissue_density"]],
            "tissue_fraction": [record["attributes"]["tissue_fraction"]],
            "stain": [record["stain"]],
            "organ": record["pathology"],
        }[attribute]
        asked_true = any(f" {value}" in item["question"] for value in truth)
        assert asked_true == (item["yes_no_answer"] == "yes"), item
        assert item["answer"].lower().startswith(item["yes_no_answer"])


def test_deterministic_for_a_seed_and_independent_of_input_order():
    records = demo_records(30)
    first = build_template_instructions(records, seed=11)
    assert first == build_template_instructions(records, seed=11)
    assert first != build_template_instructions(records, seed=12)
    shuffled = records[:]
    random.Random(0).shuffle(shuffled)
    by_caption = lambda items: sorted(items, key=lambda i: i["id"])  # noqa: E731
    assert by_caption(build_template_instructions(shuffled, seed=11)) == by_caption(first)


def test_no_closed_question_without_a_false_value_and_nothing_without_metadata():
    records = [{"caption_id": "a", "image": "a.png", "caption": "c", "attributes": {"tissue_density": "dense"}}]
    bank = load_template_bank()
    bank.attributes["tissue_density"].values = []  # only "dense" exists: "no" cannot be asked truthfully
    items = build_template_instructions(records, seed=0, bank=bank)
    assert [i["attribute"] for i in items] == ["detailed", "tissue_density"]
    plain = build_template_instructions([{"caption_id": "b", "image": "b.png", "caption": "c"}], seed=0)
    assert [i["attribute"] for i in plain] == ["detailed"]


def test_quilt_metadata_magnification_regions_and_umls_names(quilt_csv, tmp_path):
    records = read_captions(quilt_csv([f"caption {i}" for i in range(6)]))
    names = tmp_path / "MRCONSO.RRF"
    names.write_text(
        "C0006826|ENG|S|L1|PF|S1|N|A1||||MSH|SY|D1|malignant neoplasm|0|N||\n"
        "C0006826|ENG|P|L2|PF|S2|Y|A2||||MSH|PT|D1|Cancer|0|N||\n"
        "C0006826|FRE|P|L3|PF|S3|Y|A3||||MSH|PT|D1|Cancer (fr)|0|N||\n"
    )
    bank = load_template_bank(names_files={"med_umls_ids": str(names)})
    assert bank.attributes["entities"].names == {"C0006826": "Cancer"}
    items = build_template_instructions(records, seed=0, bank=bank)
    magnification = [i for i in items if i["attribute"] == "magnification" and i["answer_type"] == "OPEN"]
    assert [i["answer"] for i in magnification[:3]] == [
        "This is a low-magnification view.",
        "This is a medium-magnification view.",
        "This is a high-magnification view.",
    ]
    regions = [i for i in items if i["attribute"] == "regions"]
    assert {i["caption_id"] for i in regions} == {"1", "3", "5"}
    assert regions[0]["answer"] == "Nests of tumour cells; fibrous stroma."
    # C0007097 has no name: only the named concept can be asked about, and every record has it,
    # so no false value exists and no entity question is made
    assert not [i for i in items if i["attribute"] == "entities"]


def test_value_names_from_csv(tmp_path):
    table = tmp_path / "names.csv"
    table.write_text("cui,name\nC1,gland\nC2,necrosis\n")
    assert load_value_names(table) == {"C1": "gland", "C2": "necrosis"}
    table.write_text("cui,name\nC1\n")
    with pytest.raises(Exception, match=r"names.csv: row 2: expected 2 fields"):
        load_value_names(table)


def test_unknown_placeholder_is_a_config_error(tmp_path):
    bank = tmp_path / "bank.yaml"
    bank.write_text(
        "version: t\ndetailed_prompts: [Describe.]\n"
        "attributes:\n  x:\n    open:\n      questions: ['What is {valeu}?']\n"
    )
    with pytest.raises(ConfigError, match=r"attributes.x.open.questions.*valeu"):
        load_template_bank(bank)
