"""Evaluation never silently changes its denominator: unreadable test images are an error naming
the files, or (asked for) empty answers that are counted; wrong split names and empty sets fail.

Real QUILT-VQA files, the real builder, processor, runner and VQA task; only the model is a toy.
"""

from __future__ import annotations

import json
from pathlib import Path

NUM_QUESTIONS = 12  # the vqa_run fixture's QUILT-VQA set (conftest.py): 4 open, 8 closed
BROKEN = {2: "missing", 5: "truncated", 9: "not_an_image"}  # question index -> how its image is bad


def evaluate(cfg: Path, *options: str) -> int:
    """evaluate.py in this process (faster than a fresh interpreter; the same code path)."""
    from lavis.cli import main

    return main("eval", evaluate_only=True, argv=["--cfg-path", str(cfg), *(["--options", *options] if options else [])])


def read_outputs(out: Path) -> tuple[dict, list[dict]]:
    metrics = json.loads((out / "quilt_vqa_test_eval_metrics.json").read_text())
    answers = [json.loads(line) for line in (out / "quilt_vqa_test_eval_answers.jsonl").read_text().splitlines()]
    return metrics, answers


def test_unreadable_images_stop_the_evaluation_naming_the_files(vqa_run, tmp_path, capsys):
    assert evaluate(vqa_run(BROKEN)) == 2
    message = capsys.readouterr().err.strip()
    assert message.startswith("error: quilt_vqa_test: 3 of 12 evaluation images cannot be read")
    for i, reason in ((2, "file not found"), (5, "truncated"), (9, "not an image file")):
        assert f"img{i}.png: " in message and reason in message
    assert "run.unreadable_eval_images=empty_answer" in message
    assert not (tmp_path / "out" / "quilt_vqa_test_eval_metrics.json").exists()


def test_empty_answer_scores_every_question_and_lists_the_unreadable(vqa_run, tmp_path):
    assert evaluate(vqa_run(BROKEN, unreadable_eval_images="empty_answer")) == 0
    metrics, answers = read_outputs(tmp_path / "out")
    assert metrics["num_questions_expected"] == NUM_QUESTIONS and metrics["num_scored"] == NUM_QUESTIONS
    assert metrics["skipped_ids"] == []
    assert sorted(u["question_id"] for u in metrics["unreadable_scored_empty"]) == ["q2", "q5", "q9"]
    quilt = metrics["protocols"]["quilt"]
    assert quilt["num_open"] + quilt["num_closed"] == NUM_QUESTIONS  # 4 open + 8 closed: none dropped
    assert (quilt["num_open"], quilt["num_closed"]) == (4, 8)
    assert len(answers) == NUM_QUESTIONS
    assert {a["question_id"] for a in answers if a["text"] == ""} == {"q2", "q5", "q9"}


def test_empty_answer_counts_each_unreadable_question_once_on_two_processes(vqa_run, tmp_path, entry, free_port):
    """11 questions on 2 ranks: the sampler pads with a repeat, which must not count twice."""
    cfg = vqa_run({0: "missing", 10: "truncated"}, unreadable_eval_images="empty_answer", batch_size_eval=2)
    questions = tmp_path / "quilt_vqa" / "quiltvqa_test_wo_ans.jsonl"
    questions.write_text("".join(questions.read_text().splitlines(keepends=True)[:11]))
    proc = entry(["-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
                  f"--master_port={free_port()}", "evaluate.py", "--cfg-path", str(cfg)], timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics, answers = read_outputs(tmp_path / "out")
    assert metrics["num_questions_expected"] == 11 and metrics["num_scored"] == 11
    assert sorted(u["question_id"] for u in metrics["unreadable_scored_empty"]) == ["q0", "q10"]
    assert sorted(a["question_id"] for a in answers) == sorted(f"q{i}" for i in range(11))


def test_every_image_missing_is_an_error_not_an_empty_table(vqa_run, capsys):
    assert evaluate(vqa_run(dict.fromkeys(range(NUM_QUESTIONS), "missing"))) == 2
    assert "12 of 12 evaluation images cannot be read" in capsys.readouterr().err


def test_a_split_name_that_does_not_exist_is_an_error(vqa_run, capsys):
    assert evaluate(vqa_run({}), "run.test_splits=[tset]") == 2
    assert capsys.readouterr().err.strip() == (
        "error: run.test_splits: no data set has a split 'tset'; available: {'quilt_vqa': ['test']}. "
        "Did you mean 'test'?"
    )


def test_a_data_set_without_test_items_is_an_error(vqa_run, tmp_path, capsys):
    cfg = vqa_run({})
    (tmp_path / "quilt_vqa" / "quiltvqa_test_wo_ans.jsonl").write_text("")
    assert evaluate(cfg) == 2
    assert capsys.readouterr().err.strip() == (
        f"error: {tmp_path / 'quilt_vqa' / 'quiltvqa_test_wo_ans.jsonl'}: no samples for split 'test' of "
        "datasets.quilt_vqa (the file holds no records, or all were filtered out)"
    )


def test_a_data_set_whose_split_is_empty_is_an_error_for_any_builder(toy_run, capsys):
    """A builder that returns an empty split (not a table): the runner's own check names it."""
    cfg = toy_run({"test_splits": ["test"]}, data={"num_questions": 0}, dataset="toy_vqa", arch="toy_vqa", task="vqa")
    assert evaluate(cfg) == 2
    assert capsys.readouterr().err.strip() == (
        "error: datasets.toy_vqa: split 'test' (run.test_splits) has no items: nothing to evaluate"
    )
