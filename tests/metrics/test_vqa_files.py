"""Loading ground truth and answer files; malformed input names the file, item/line and field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lavis.common.errors import DataError
from lavis.metrics.vqa import VQARecord, load_ground_truth, load_predictions


def assert_error_names(load, path: Path, parts: list[str]) -> None:
    """``load(path)`` raises a DataError whose message names the file and holds every part."""
    with pytest.raises(DataError) as caught:
        load(path)
    message = str(caught.value)
    assert str(path) in message
    for part in parts:
        assert part in message


def test_llava_med_layout_with_both_key_spellings(llava_med_gt: Path) -> None:
    records = load_ground_truth(llava_med_gt)
    assert [r.question_id for r in records] == [1, 2, 3, 4, 5, 6]
    assert records[0] == VQARecord(1, "<image>\nWhat is the diagnosis?", "Adenocarcinoma", "OPEN", None)
    assert records[5].answer == "yes" and records[5].answer_type == "CLOSED"  # "conversations" spelling


def test_quilt_layout_as_json_list_and_as_json_lines(
    quilt_gt: Path, quilt_items: list, tmp_path: Path
) -> None:
    from_list = load_ground_truth(quilt_gt)
    lines = tmp_path / "w_ans.jsonl"
    lines.write_text("".join(json.dumps(item) + "\n" for item in quilt_items))
    from_lines = load_ground_truth(lines)
    assert from_list == from_lines
    assert from_list[1] == VQARecord(
        1, "Is there necrosis?", "No, there is no evidence of necrosis in the image.", "CLOSED", "no"
    )


def test_answer_type_is_inferred_when_missing(tmp_path: Path) -> None:
    items = [{"id": "a", "answer": "Yes."}, {"id": "b", "answer": "No"}, {"id": "c", "answer": "Adenoma"}]
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(items))
    assert [r.answer_type for r in load_ground_truth(path)] == ["CLOSED", "CLOSED", "OPEN"]


def test_quilt_other_answer_type_is_open(tmp_path: Path) -> None:
    path = tmp_path / "gt.json"
    path.write_text(json.dumps([{"id": 1, "answer": "x", "answer_type": "other"}]))
    assert load_ground_truth(path)[0].answer_type == "OPEN"


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ('[{"id": 1, "answer": "x"}, 5]', ["item 1", "expected a JSON object"]),
        ('[{"answer": "x"}]', ["item 0", "'id'"]),
        ('[{"id": 1}]', ["item 0", "'conversations'", "'answer'"]),
        ('[{"id": 1, "answer": "x", "answer_type": "open"}]', ["item 0", "'answer_type'", "'OPEN'"]),
        ('[{"id": 1, "answer": 3}]', ["item 0", "'answer'", "string"]),
        (
            '[{"id": 1, "conversations": [{"from": "human", "value": "q"}]}]',
            ["item 0", "'conversations'", "two turns"],
        ),
        (
            '[{"id": 1, "conversatons": [{"value": "q"}, {"from": "gpt"}]}]',
            ["item 0", "'conversatons'[1]", "'value'"],
        ),
        ('[{"id": 1, "answer": "x", "yes_no_answer": 1}]', ["item 0", "'yes_no_answer'"]),
        ('[{"id": 1, "answer": "x"}, {"id": 1, "answer": "y"}]', ["item 1", "duplicate id 1", "item 0"]),
        ('{"id": 1, "answer": "x"}\n{"id": 2, "answer": \n', ["line 2", "invalid JSON"]),
        ("[]", ["no questions"]),
        ('[{"id": 1, "answer": "x"', ["line 1", "invalid JSON"]),
    ],
)
def test_malformed_ground_truth(tmp_path: Path, content: str, expected: list[str]) -> None:
    path = tmp_path / "bad_gt.json"
    path.write_text(content)
    assert_error_names(load_ground_truth, path, expected)


def test_predictions_keep_ids_and_text(llava_med_pred: Path) -> None:
    predictions = load_predictions(llava_med_pred)
    assert list(predictions) == [6, 1, 5, 3, 2, 4]
    assert predictions[2] == "cell cell cell"


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        (
            ['{"question_id": 1, "text": "a"}', '{"question_id": 1, "text": "b"}'],
            ["line 2", "duplicate question_id 1", "line 1"],
        ),
        (['{"question_id": 1, "text": "a"}', "", "not json"], ["line 3", "invalid JSON"]),
        (['{"text": "a"}'], ["line 1", "'question_id'"]),
        (['{"question_id": 1, "text": null}'], ["line 1", "'text'", "string"]),
        (['{"question_id": true, "text": "a"}'], ["line 1", "'question_id'"]),
        (['{"question_id": 1, "text": "a"}', '["question_id", 2]'], ["line 2", "expected a JSON object"]),
    ],
)
def test_malformed_predictions(tmp_path: Path, lines: list[str], expected: list[str]) -> None:
    path = tmp_path / "answers.jsonl"
    path.write_text("\n".join(lines) + "\n")
    assert_error_names(load_predictions, path, expected)
