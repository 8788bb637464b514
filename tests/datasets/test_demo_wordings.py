"""The demo's question wordings: held out from training and from each other, one wording per unit."""

import random

import pytest

from lavis.common.errors import ConfigError
from lavis.common.paths import config_path
from lavis.datasets.demo.wordings import (
    concrete,
    load_wording_file,
    normalized,
    reword,
    split_wordings,
    template_wordings,
)
from lavis.instructions.templates import load_template_bank


@pytest.fixture(scope="module")
def bank():
    return load_template_bank(config_path("demo/templates.yaml"))


def _values(bank):
    return {name: list(spec.values) for name, spec in bank.attributes.items()}


def test_heldout_wordings_are_new_and_the_page_placeholder_is_a_test_wording(bank):
    wordings = split_wordings(bank)
    values = _values(bank)
    questions = {name: set(concrete(w, values)) for name, w in wordings.items()}
    training = questions["generated"] | set(concrete(template_wordings(bank), values))
    assert not questions["val"] & training and not questions["test"] & training
    assert not questions["val"] & questions["test"]
    assert normalized("Is the tissue dense?") in questions["test"]
    # variety: dozens of generated wordings per attribute and kind, short and polite forms among them
    for kind in (wordings["generated"].closed, wordings["generated"].open):
        assert set(kind) == {"stain", "tissue_fraction", "tissue_density", "dab_staining"}
        assert all(len(frames) >= 40 for frames in kind.values())
    assert "{value} tissue?" in wordings["generated"].closed["tissue_density"]
    assert "Can you tell me whether the tissue is {value}?" in wordings["generated"].closed["tissue_density"]


def test_a_heldout_wording_that_training_uses_is_an_error(bank):
    file = load_wording_file()
    file.heldout["test"].attributes["tissue_density"].closed.append("Is the tissue in this image {value}?")
    with pytest.raises(ConfigError, match="'Is the tissue in this image {value}\\?' is a template"):
        split_wordings(bank, file)
    file = load_wording_file()
    file.heldout["val"].attributes["stain"].open.append("Which stain is this?")
    with pytest.raises(ConfigError, match="both a val and a test wording"):
        split_wordings(bank, file)


def test_a_generated_wording_equal_to_a_heldout_one_is_left_out_of_training(bank):
    file = load_wording_file()
    file.generated.attributes["tissue_density"].closed_questions.append("Is the tissue {value}?")
    generated = split_wordings(bank, file)["generated"]
    assert "Is the tissue {value}?" not in generated.closed["tissue_density"]
    assert "Is the tissue {value} here?" in generated.closed["tissue_density"]


def test_a_unit_shares_one_new_wording_and_keeps_the_asked_value(bank):
    test = split_wordings(bank)["test"]
    values = _values(bank)
    pair = ({"attribute": "tissue_density", "answer_type": "CLOSED", "question": "Is the tissue in this image loose?",
             "answer": "The tissue is loose: yes.", "yes_no_answer": "yes"},
            {"attribute": "tissue_density", "answer_type": "CLOSED", "question": "Is the tissue in this image loose?",
             "answer": "The tissue is dense: no.", "yes_no_answer": "no"})
    for seed in range(20):
        new = reword(pair, test, values, random.Random(seed))
        assert new[0]["question"] == new[1]["question"] != pair[0]["question"]
        assert "loose" in new[0]["question"] and "dense" not in new[0]["question"]
        assert [q["answer"] for q in new] == [q["answer"] for q in pair]
    tuple_ = ({"attribute": "stain", "answer_type": "OPEN", "question": "Which stain is used in this image?",
               "answer": "H&E"},
              {"attribute": "stain", "answer_type": "OPEN", "question": "Which stain is used in this image?",
               "answer": "IHC"})
    asked = {reword(tuple_, test, values, random.Random(seed))[1]["question"] for seed in range(40)}
    assert "Is the stain here H&E or IHC?" in asked and "Is the stain here IHC or H&E?" in asked
    unknown = ({"attribute": "magnification", "answer_type": "OPEN", "question": "At what magnification?",
                "answer": "low"},)
    assert reword(unknown, test, values, random.Random(0)) is None  # keeps its template wording


def test_composed_openings_are_drawn_per_question_and_keep_the_question_readable():
    from lavis.datasets.demo.wordings import Openings, expand_grammar

    openings = Openings(phrases=["Right", "Moving on"], marks=[":", "."], per_question=3)
    drawn = openings.draw("Is the tissue {value} here?")
    assert len(drawn) == 3 == len(set(drawn)) and set(drawn) <= {"Right:", "Right.", "Moving on:", "Moving on."}
    assert drawn == openings.draw("Is the tissue {value} here?")  # the same in every process (seeded by the text)
    grammar = load_wording_file().generated
    grammar.openings = openings
    frames = expand_grammar(grammar).closed["tissue_density"]
    opened = [f for f in frames if f.startswith(("Right", "Moving on"))]
    assert len(opened) == 3 * len(grammar.attributes["tissue_density"].closed_questions)
    for frame in opened:  # after a colon the question goes on in lower case; after a full stop it starts anew
        opening = next(o for o in ("Right:", "Right.", "Moving on:", "Moving on.") if frame.startswith(o + " "))
        assert frame[len(opening) + 1].isupper() == opening.endswith("."), frame
