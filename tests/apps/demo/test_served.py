"""The served measurement's pieces: verdict/confidence agreement, the earlier turn of a follow-up, scoring."""

from lavis.apps.demo.served import agrees, earlier_question, score_served
from lavis.metrics.vqa_files import VQARecord


def test_agreement_needs_the_bar_on_the_verdicts_side_or_neither():
    assert agrees("The tissue is loose: no.", {"yes": 0.2, "no": 0.8})
    assert not agrees("The tissue is loose: no.", {"yes": 0.7, "no": 0.3})
    assert not agrees("The tissue is loose: no.", None)  # a closed answer with a verdict and no bar
    assert not agrees("large", {"yes": 0.58, "no": 0.42})  # a bar without a verdict (the example)
    assert agrees("large", None)


def test_the_earlier_turn_is_another_attribute_of_the_same_tile_else_a_description():
    heldout = [{"question_id": "a:1:w", "image": "t1.png", "text": "Is the tissue dense?"},
               {"question_id": "a:2:w", "image": "t1.png", "text": "Which stain is this?"},
               {"question_id": "a:3:w", "image": "t1.png", "text": "Quick question: is the tissue dense?"},
               {"question_id": "b:1:w", "image": "t2.png", "text": "Is the DAB positive?"}]
    attributes = {"a:1:w": "tissue_density", "a:2:w": "stain", "a:3:w": "tissue_density", "b:1:w": "dab_staining"}
    assert earlier_question(heldout[0], heldout, attributes, "Describe it.", 0) == ("t1.png", "Which stain is this?")
    assert earlier_question(heldout[3], heldout, attributes, "Describe it.", 0) == ("t2.png", "Describe it.")


def test_followups_are_scored_beside_the_same_questions_alone():
    truth = {"q1": VQARecord("q1", "Is it dense?", "The tissue is dense: yes.", "CLOSED", "yes"),
             "q2": VQARecord("q2", "Is it loose?", "The tissue is dense: no.", "CLOSED", "no"),
             "q3": VQARecord("q3", "Which stain?", "H&E", "OPEN")}
    records = [
        {"question_id": "q1", "mode": "alone", "image": "t1", "text": "The tissue is dense: yes.", "yes_no": {"yes": 0.9, "no": 0.1}},
        {"question_id": "q2", "mode": "alone", "image": "t2", "text": "The tissue is dense: no.", "yes_no": {"yes": 0.1, "no": 0.9}},
        {"question_id": "q3", "mode": "alone", "image": "t1", "text": "H&E", "yes_no": None},
        {"question_id": "q1", "mode": "followup", "image": "t1", "text": "The tissue is dense: yes.", "yes_no": {"yes": 0.9, "no": 0.1}},
        {"question_id": "q2", "mode": "followup", "image": "t2", "text": "The tissue is loose: yes.", "yes_no": None},
    ]
    scores = score_served(records, truth, {"q1": "tissue_density", "q2": "tissue_density", "q3": "stain"})
    assert scores["closed_accuracy_heldout_wording"] == 100.0 and scores["open_recall_heldout_wording"] == 100.0
    assert scores["alone_closed_accuracy"] == 100.0 and scores["followup_closed_accuracy"] == 50.0
    assert scores["num_closed_answers_checked"] == 4 and scores["verdict_confidence_agreement"] == 75.0
    assert scores["closed_answers_without_bar"] == 1
