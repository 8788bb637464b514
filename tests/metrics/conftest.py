"""Evaluation files written in the published layouts (LLaVA-Med test JSON, QUILT-VQA w_ans, answers)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


def _turns(question: str, answer: str) -> list[dict]:
    return [{"from": "human", "value": f"<image>\n{question}"}, {"from": "gpt", "value": answer}]


# (id, question, answer, answer_type, prediction). The answer file lists them in another order.
LLAVA_MED_QUESTIONS = [
    (1, "What is the diagnosis?", "Adenocarcinoma", "OPEN", "Adenocarcinoma."),
    (2, "What is seen?", "cell tumor", "OPEN", "cell cell cell"),
    (3, "Is this tissue abnormal?", "no", "CLOSED", "The tissue looks normal."),
    (4, "Is there a mass?", "yes", "CLOSED", "A nodule is seen."),
    (5, "Is it malignant?", "yes", "CLOSED", "It is benign."),
    (6, "Is there atypia?", "yes", "CLOSED", "Yes, but it is not malignant."),
]
PREDICTION_ORDER = [6, 1, 5, 3, 2, 4]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


@pytest.fixture
def llava_med_gt(tmp_path: Path) -> Path:
    """A LLaVA-Med test.json; the first half spells the key ``conversatons`` as some releases do."""
    items = []
    for index, (question_id, question, answer, answer_type, _) in enumerate(LLAVA_MED_QUESTIONS):
        key = "conversatons" if index < 3 else "conversations"
        items.append(
            {
                "id": question_id,
                "image": f"{question_id}.jpg",
                key: _turns(question, answer),
                "answer_type": answer_type,
            }
        )
    path = tmp_path / "test.json"
    path.write_text(json.dumps(items, indent=2), encoding="utf-8")
    return path


@pytest.fixture
def llava_med_pred(tmp_path: Path) -> Path:
    """A LLaVA-Med answer file (``model_vqa_med.py`` layout), in a different order than the ground truth."""
    by_id = {row[0]: row for row in LLAVA_MED_QUESTIONS}
    rows = [
        {
            "question_id": qid,
            "prompt": by_id[qid][1],
            "text": by_id[qid][4],
            "answer_id": f"a{qid}",
            "model_id": "clover",
            "metadata": {},
        }
        for qid in PREDICTION_ORDER
    ]
    return write_jsonl(tmp_path / "answers.jsonl", rows)


QUILT_ITEMS = [
    {
        "id": 0,
        "image": "0.jpg",
        "question": "What type of cells are visible?",
        "answer": "The image shows atypical squamous cells with keratin pearls.",
        "answer_type": "OPEN",
        "yes_no_answer": "",
    },
    {
        "id": 1,
        "image": "1.jpg",
        "question": "Is there necrosis?",
        "answer": "No, there is no evidence of necrosis in the image.",
        "answer_type": "CLOSED",
        "yes_no_answer": "no",
    },
    {
        "id": 2,
        "image": "2.jpg",
        "question": "Are mitotic figures present?",
        "answer": "Yes, mitotic figures are seen.",
        "answer_type": "CLOSED",
        "yes_no_answer": "yes",
    },
]
QUILT_PREDICTIONS = {
    0: "Atypical squamous cells with keratin pearls are seen.",
    1: "No, necrosis is not present.",
    2: "Yes.",
}


@pytest.fixture
def quilt_items() -> list[dict]:
    return [dict(item) for item in QUILT_ITEMS]


@pytest.fixture
def quilt_gt(tmp_path: Path) -> Path:
    """QUILT-VQA's quiltvqa_test_w_ans.json: one JSON list, read by the script with json.load."""
    path = tmp_path / "quiltvqa_test_w_ans.json"
    path.write_text(json.dumps(QUILT_ITEMS), encoding="utf-8")
    return path


@pytest.fixture
def quilt_pred(tmp_path: Path) -> Path:
    rows = [{"question_id": qid, "prompt": "", "text": text} for qid, text in QUILT_PREDICTIONS.items()]
    return write_jsonl(tmp_path / "quilt_answers.jsonl", rows)
