"""End-to-end VQA scoring on files in the published layouts: API, command, per-question output.

The six LLaVA-Med questions (conftest.LLAVA_MED_QUESTIONS) are scored by hand below.
Open, published normalisation:
  q1 "adenocarcinoma" vs "adenocarcinoma": recall = precision = F1 = exact = 1; BLEU-1 = 1,
     BLEU-2/3 = nltk's tiny float T (no 2-/3-grams), BLEU-4 = T**0.75
  q2 "cell cell cell" vs "cell tumor": recall 3/4, precision 1, F1 6/7, exact 1/3 (see
     test_open_closed); BLEU-1 = clipped 1/3 (no brevity penalty: 3 > 2 words), BLEU-2/3 = T
Closed (normalised predictions; llava_med = released run_eval.py, initial = its first version):
  q3 "tissue looks normal" / no    llava_med: hit ("no" in "normal")  initial: hit      quilt: "yes" -> miss  strict: miss
  q4 "nodule is seen" / yes        llava_med: miss ("no", no "yes")    initial: dropped  quilt: "yes" -> hit   strict: miss
  q5 "it is benign" / yes          llava_med: miss                     initial: miss     quilt: "yes" -> hit   strict: miss
  q6 "yes but it is not malignant" llava_med: hit                      initial: hit      quilt: "not" -> miss  strict: hit
  -> closed accuracy llava_med 2/4, llava_med_initial 2/3, quilt 2/4, strict 1/4.
"""

from __future__ import annotations

import dataclasses
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from lavis.common.errors import ConfigError, DataError
from lavis.metrics.protocols import PROTOCOLS
from lavis.metrics.vqa import SUMMARY_KEYS, IdMismatchError, load_ground_truth, load_predictions, score
from lavis.metrics.vqa.__main__ import main

TINY = sys.float_info.min
PUBLISHED_OPEN = {
    "open_recall": (1 + 0.75) / 2 * 100,
    "open_precision": 100.0,
    "open_f1": (1 + 6 / 7) / 2 * 100,
    "exact_match": (1 + 1 / 3) / 2 * 100,
    "bleu": (TINY**0.75 + (1 / 3) ** 0.25 * TINY**0.75) / 2 * 100,
    "bleu_1": (1 + 1 / 3) / 2 * 100,
    "bleu_2": TINY * 100,
    "bleu_3": TINY * 100,
}
# strict, q2: clipped overlap 1 -> recall 1/2, precision 1/3, F1 0.4, exact 0; BLEU-n cumulative over
# min(n, 3) orders with method-1 smoothing: p1 = 1/3, p2 = 0.1/2, p3 = 0.1/1; q1 scores 1 everywhere.
STRICT_OPEN = {
    "open_recall": (1 + 0.5) / 2 * 100,
    "open_precision": (1 + 1 / 3) / 2 * 100,
    "open_f1": (1 + 0.4) / 2 * 100,
    "exact_match": 50.0,
    "bleu": (1 + (1 / 3 * 0.05 * 0.1) ** (1 / 3)) / 2 * 100,
    "bleu_1": (1 + 1 / 3) / 2 * 100,
    "bleu_2": (1 + math.sqrt(1 / 3 * 0.05)) / 2 * 100,
    "bleu_3": (1 + (1 / 3 * 0.05 * 0.1) ** (1 / 3)) / 2 * 100,
}


@pytest.mark.parametrize(
    ("protocol", "expected_open", "closed_accuracy"),
    [
        ("llava_med", PUBLISHED_OPEN, 2 / 4 * 100),
        ("llava_med_initial", PUBLISHED_OPEN, 2 / 3 * 100),
        ("quilt", PUBLISHED_OPEN, 50.0),
        ("strict", STRICT_OPEN, 25.0),
    ],
)
def test_summary_by_protocol(
    llava_med_gt: Path, llava_med_pred: Path, protocol: str, expected_open: dict, closed_accuracy: float
) -> None:
    summary, per_item = score(load_ground_truth(llava_med_gt), load_predictions(llava_med_pred), protocol)
    assert tuple(summary) == SUMMARY_KEYS
    for key, value in expected_open.items():
        assert summary[key] == pytest.approx(value, rel=1e-9, abs=1e-300), key
    assert summary["closed_accuracy"] == pytest.approx(closed_accuracy)
    assert (summary["num_open"], summary["num_closed"]) == (2, 4)
    assert [row["question_id"] for row in per_item] == [1, 2, 3, 4, 5, 6]  # ground-truth order


@pytest.mark.parametrize(
    ("protocol", "expected"),
    [
        ("llava_med", {3: (1, True), 4: (0, True), 5: (0, True), 6: (1, True)}),  # every question counts
        ("llava_med_initial", {3: (1, True), 4: (0, False), 5: (0, True), 6: (1, True)}),
    ],
)
def test_llava_med_per_item_closed_rows(
    llava_med_gt: Path, llava_med_pred: Path, protocol: str, expected: dict
) -> None:
    _, per_item = score(load_ground_truth(llava_med_gt), load_predictions(llava_med_pred), protocol)
    closed = {
        row["question_id"]: (row["hit"], row["counted"]) for row in per_item if row["answer_type"] == "CLOSED"
    }
    assert closed == expected


def test_llava_med_always_yes_model_is_not_perfect(llava_med_gt: Path) -> None:
    # The released rule's reason to exist: a model answering "yes" to everything hits q4, q5, q6 and
    # misses q3 (answer "no"), so 3/4 - the initial script dropped q3 and printed 100.
    records = load_ground_truth(llava_med_gt)
    always_yes = {record.question_id: "Yes." for record in records}
    assert score(records, always_yes, "llava_med")[0]["closed_accuracy"] == 75.0
    assert score(records, always_yes, "llava_med_initial")[0]["closed_accuracy"] == 100.0


def test_quilt_file_under_each_protocol(quilt_gt: Path, quilt_pred: Path) -> None:
    records, predictions = load_ground_truth(quilt_gt), load_predictions(quilt_pred)
    # open: reference "image shows atypical squamous cells with keratin pearls" (8 words) vs
    # "atypical squamous cells with keratin pearls are seen" (8): 6 shared -> 0.75 / 0.75 / 0.75,
    # exact match 6 distinct / 8 words
    summary, _ = score(records, predictions, "quilt")
    assert summary["open_recall"] == pytest.approx(75.0)
    assert summary["open_precision"] == pytest.approx(75.0)
    assert summary["open_f1"] == pytest.approx(75.0)
    assert summary["exact_match"] == pytest.approx(75.0)
    # closed by yes_no_answer: "no necrosis is not present" -> no (hit); "yes" -> yes (hit)
    assert summary["closed_accuracy"] == 100.0
    # LLaVA-Med's rule compares whole sentence answers as substrings: neither closed prediction
    # contains its sentence answer, so both are misses (released) or both dropped (initial, which
    # then prints 0)
    summary, per_item = score(records, predictions, "llava_med")
    assert summary["closed_accuracy"] == 0.0
    assert [row["counted"] for row in per_item if row["answer_type"] == "CLOSED"] == [True, True]
    summary, per_item = score(records, predictions, "llava_med_initial")
    assert summary["closed_accuracy"] == 0.0
    assert [row["counted"] for row in per_item if row["answer_type"] == "CLOSED"] == [False, False]
    summary, _ = score(records, predictions, "strict")
    assert summary["closed_accuracy"] == 100.0  # first yes/no word: "no", "yes"


def test_quilt_protocol_needs_yes_no_labels(quilt_items: list, tmp_path: Path) -> None:
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(quilt_items))
    records = load_ground_truth(path)
    records[1] = dataclasses.replace(records[1], yes_no_answer="maybe")  # built in code, not read from a file
    predictions = {0: "x", 1: "no", 2: "yes"}
    with pytest.raises(DataError, match=r"question 1: .*yes/no label.*'maybe'"):
        score(records, predictions, "quilt")
    quilt_items[1]["yes_no_answer"] = "maybe"  # a file with it is refused when read, for every protocol
    path.write_text(json.dumps(quilt_items))
    with pytest.raises(DataError, match=r"gt\.json: item 1: field 'yes_no_answer' must be yes or no .*'maybe'"):
        load_ground_truth(path)


def test_matching_is_by_id_and_reports_missing_and_extra(llava_med_gt: Path, llava_med_pred: Path) -> None:
    records, predictions = load_ground_truth(llava_med_gt), load_predictions(llava_med_pred)
    in_order = {record.question_id: predictions[record.question_id] for record in records}
    assert score(records, in_order, "llava_med") == score(records, predictions, "llava_med")
    as_text = {str(key): text for key, text in predictions.items()}  # "5" matches 5
    assert score(records, as_text, "strict")[0] == score(records, predictions, "strict")[0]

    broken = dict(predictions)
    del broken[4], broken[2]
    broken[99] = "extra"
    with pytest.raises(IdMismatchError) as caught:
        score(records, broken, "strict")
    assert caught.value.missing == [2, 4] and caught.value.extra == [99]
    assert "[2, 4]" in str(caught.value) and "[99]" in str(caught.value)


def test_api_rejects_duplicate_questions_and_non_text_answers(llava_med_gt: Path) -> None:
    records = load_ground_truth(llava_med_gt)
    with pytest.raises(DataError, match="more than once"):
        score([*records, records[0]], {r.question_id: "x" for r in records}, "strict")
    with pytest.raises(DataError, match="question 3 is None"):
        score(records, {r.question_id: None if r.question_id == 3 else "x" for r in records}, "strict")


def test_period_limit_separates_f1_from_bleu() -> None:
    # 40 trailing periods: one pass leaves "tumor" + 8 periods (what BLEU sees), the second pass
    # inside the F1 helper removes them ("tumor"). So F1 = 1 while BLEU-1 = 0; strict sees "tumor".
    published = PROTOCOLS["llava_med"].score_open("Tumor" + "." * 40, "tumor")
    assert (published["f1"], published["exact_match"], published["bleu_1"]) == (1.0, 1.0, 0.0)
    strict = PROTOCOLS["strict"].score_open("Tumor" + "." * 40, "tumor")
    assert (strict["f1"], strict["exact_match"], strict["bleu_1"]) == (1.0, 1.0, 1.0)


def test_unknown_protocol(llava_med_gt: Path) -> None:
    with pytest.raises(ConfigError, match="unknown VQA protocol 'vqa2'.*llava_med"):
        score(load_ground_truth(llava_med_gt), {}, "vqa2")


def test_command_prints_summary_and_writes_per_item(
    llava_med_gt: Path, llava_med_pred: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "reports" / "per_item.jsonl"
    argv = [
        "--protocol",
        "llava_med",
        "--gt",
        str(llava_med_gt),
        "--pred",
        str(llava_med_pred),
        "--per-item",
        str(out),
    ]
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    assert set(summary) == set(SUMMARY_KEYS)
    assert summary["open_recall"] == pytest.approx(87.5)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [row["question_id"] for row in rows] == [1, 2, 3, 4, 5, 6]
    assert set(rows[1]) == {
        "question_id",
        "answer_type",
        "recall",
        "precision",
        "f1",
        "exact_match",
        "bleu",
        "bleu_1",
        "bleu_2",
        "bleu_3",
    }
    assert rows[1]["recall"] == pytest.approx(0.75)
    assert rows[2] == {"question_id": 3, "answer_type": "CLOSED", "hit": 1, "counted": True}


def test_command_errors_are_one_line(
    llava_med_gt: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    partial = tmp_path / "partial.jsonl"
    partial.write_text('{"question_id": 1, "text": "a"}\n{"question_id": 7, "text": "b"}\n')
    assert main(["--protocol", "strict", "--gt", str(llava_med_gt), "--pred", str(partial)]) == 1
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and error.startswith("error: ")
    assert "[2, 3, 4, 5, 6]" in error and "[7]" in error
    with pytest.raises(SystemExit) as exited:
        main(["--protocol", "vqa2", "--gt", "a", "--pred", "b"])
    assert exited.value.code == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_command_as_module(llava_med_gt: Path, llava_med_pred: Path, repo_root: Path, tmp_path: Path) -> None:
    command = [sys.executable, "-m", "lavis.metrics.vqa", "--protocol", "quilt", "--gt", str(llava_med_gt)]
    done = subprocess.run(
        [*command, "--pred", str(llava_med_pred)], cwd=repo_root, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert "found in sys.modules" not in done.stderr  # the command module is not imported twice
    assert json.loads(done.stdout)["closed_accuracy"] == pytest.approx(50.0)
    failed = subprocess.run(
        [*command, "--pred", str(tmp_path / "missing.jsonl")], cwd=repo_root, capture_output=True, text=True
    )
    assert failed.returncode == 1
    assert "Traceback" not in failed.stderr and failed.stderr.startswith("error: ")
    assert "missing.jsonl" in failed.stderr
