"""The VQA task's evaluation step: the rank path for closed questions, and the duplicate-id check."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from lavis.common.errors import DataError
from lavis.tasks.vqa import VQATask, VQATaskConfig


class RecordingModel:
    """Answers from the row's feature; remembers which questions were generated / ranked."""

    def __init__(self) -> None:
        self.generated: list[list[str]] = []
        self.ranked: list[list[str]] = []

    def predict_answers(self, samples: dict, **generation) -> list[str]:
        self.generated.append(list(samples["question_id"]))
        return [f"generated {int(x)}" for x in samples["x"].tolist()]

    def rank_answers(self, samples: dict, candidates=("yes", "no")) -> list[str]:
        self.ranked.append(list(samples["question_id"]))
        return [candidates[int(x) % 2] for x in samples["x"].tolist()]


def _batch(types: list[str | None]) -> dict:
    n = len(types)
    return {
        "x": torch.arange(n, dtype=torch.float32),
        "question_id": [f"q{i}" for i in range(n)],
        "text_input": [f"question {i}" for i in range(n)],
        "answer": [f"answer {i}" for i in range(n)],
        "answer_type": types,
        "image_path": [f"{i}.png" for i in range(n)],
    }


@pytest.mark.parametrize(
    "types",
    [["CLOSED", "OPEN", "CLOSED", "OPEN", "OPEN"], ["CLOSED", "CLOSED"], ["OPEN", "OPEN"]],
)
def test_rank_generates_only_open_questions(types: list[str]) -> None:
    model = RecordingModel()
    rows = VQATask(VQATaskConfig(closed_method="rank")).valid_step(model, _batch(types))
    closed = [f"q{i}" for i, t in enumerate(types) if t == "CLOSED"]
    others = [f"q{i}" for i, t in enumerate(types) if t != "CLOSED"]
    assert model.generated == ([others] if others else [])
    assert model.ranked == ([closed] if closed else [])
    # the same records as generating for every row, then ranking the closed ones over it
    expected = [
        ("yes" if i % 2 == 0 else "no") if t == "CLOSED" else f"generated {i}" for i, t in enumerate(types)
    ]
    assert [r["prediction"] for r in rows] == expected
    assert [r["question_id"] for r in rows] == [f"q{i}" for i in range(len(types))]
    assert [r["answer"] for r in rows] == [f"answer {i}" for i in range(len(types))]
    assert [r["image_path"] for r in rows] == [f"{i}.png" for i in range(len(types))]
    assert all(r["yes_no_answer"] is None for r in rows)


def test_generate_method_generates_every_row() -> None:
    model = RecordingModel()
    rows = VQATask(VQATaskConfig()).valid_step(model, _batch(["CLOSED", "OPEN"]))
    assert model.generated == [["q0", "q1"]] and model.ranked == []
    assert [r["prediction"] for r in rows] == ["generated 0", "generated 1"]


def test_duplicate_ids_are_matched_as_text(tmp_path) -> None:
    task = VQATask(dataclasses.replace(VQATaskConfig(), protocols=["strict"]))
    record = {"prompt": "p", "prediction": "yes", "answer": "yes", "answer_type": "CLOSED", "image_path": None}
    records = [{**record, "question_id": qid} for qid in (5, "5", 6, 7, 7)]
    with pytest.raises(DataError, match=r"test: question ids are not unique, e\.g\. \['5', '7'\]"):
        task.after_evaluation(records, "test", 0, tmp_path)
