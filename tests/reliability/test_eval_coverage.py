"""Evaluation never silently changes its denominator: unreadable test images are an error naming
the files, or (asked for) empty answers that are counted; wrong split names and empty sets fail.

Real QUILT-VQA files, the real builder, processor, runner and VQA task; only the model is a toy.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

NUM_QUESTIONS = 12
BROKEN = {2: "missing", 5: "truncated", 9: "not_an_image"}  # question index -> how its image is bad


def write_quilt_vqa(root: Path, broken: dict[int, str]) -> None:
    """QUILT-VQA's release layout: questions JSONL, answers JSON, images/ (one image per question)."""
    (root / "images").mkdir(parents=True)
    rng = np.random.default_rng(0)
    questions, answers = [], []
    for i in range(NUM_QUESTIONS):
        name, closed = f"img{i}.png", i % 3 != 0
        pixels = rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / "images" / name)
        if broken.get(i) == "missing":
            (root / "images" / name).unlink()
        elif broken.get(i) == "truncated":
            data = (root / "images" / name).read_bytes()
            (root / "images" / name).write_bytes(data[: len(data) // 2])
        elif broken.get(i) == "not_an_image":
            (root / "images" / name).write_text("<html>404 not found</html>")
        questions.append({"question_id": f"q{i}", "image": name,
                          "text": "Is there necrosis?" if closed else "What does the tissue show?"})
        answers.append({"id": f"q{i}", "answer": ("Yes, there is." if i % 2 else "No, there is not.") if closed
                        else "Glands lined by columnar epithelium.", "answer_type": "CLOSED" if closed else "OPEN",
                        **({"yes_no_answer": "yes" if i % 2 else "no"} if closed else {})})
    (root / "quiltvqa_test_wo_ans.jsonl").write_text("".join(json.dumps(q) + "\n" for q in questions))
    (root / "quiltvqa_test_w_ans.json").write_text(json.dumps(answers))


@pytest.fixture
def vqa_run(tmp_path, toy_run):
    """``vqa_run(broken, **run_keys)`` -> a run YAML evaluating the toy model on those files."""

    def make(broken: dict[int, str], **run) -> Path:
        root = tmp_path / "quilt_vqa"
        write_quilt_vqa(root, broken)
        data = {"storage": str(root), "vis_processor": {"eval": {"name": "pathology_image_eval", "image_size": 32}}}
        keys = {"test_splits": ["test"], "batch_size_eval": 4, "protocols": ["quilt", "strict"], **run}
        return toy_run(keys, data=data, dataset="quilt_vqa", arch="toy_image_vqa", task="vqa")

    return make


def read_outputs(out: Path) -> tuple[dict, list[dict]]:
    metrics = json.loads((out / "quilt_vqa_test_eval_metrics.json").read_text())
    answers = [json.loads(line) for line in (out / "quilt_vqa_test_eval_answers.jsonl").read_text().splitlines()]
    return metrics, answers


def test_unreadable_images_stop_the_evaluation_naming_the_files(vqa_run, tmp_path, entry):
    proc = entry(["evaluate.py", "--cfg-path", str(vqa_run(BROKEN))])
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    message = proc.stderr.strip().splitlines()[-1]
    assert message.startswith("error: quilt_vqa_test: 3 of 12 evaluation images cannot be read")
    for i, reason in ((2, "file not found"), (5, "truncated"), (9, "not an image file")):
        assert f"img{i}.png: " in message and reason in message
    assert "run.unreadable_eval_images=empty_answer" in message
    assert not (tmp_path / "out" / "quilt_vqa_test_eval_metrics.json").exists()


def test_empty_answer_scores_every_question_and_lists_the_unreadable(vqa_run, tmp_path, entry):
    proc = entry(["evaluate.py", "--cfg-path", str(vqa_run(BROKEN, unreadable_eval_images="empty_answer"))])
    assert proc.returncode == 0, proc.stderr[-3000:]
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


def test_every_image_missing_is_an_error_not_an_empty_table(vqa_run, entry):
    proc = entry(["evaluate.py", "--cfg-path", str(vqa_run(dict.fromkeys(range(NUM_QUESTIONS), "missing")))])
    assert proc.returncode == 2
    assert "12 of 12 evaluation images cannot be read" in proc.stderr


def test_a_split_name_that_does_not_exist_is_an_error(vqa_run, entry):
    proc = entry(["evaluate.py", "--cfg-path", str(vqa_run({})), "--options", "run.test_splits=[tset]"])
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        "error: run.test_splits: no data set has a split 'tset'; available: {'quilt_vqa': ['test']}. "
        "Did you mean 'test'?"
    )


def test_a_data_set_without_test_items_is_an_error(vqa_run, tmp_path, entry):
    cfg = vqa_run({})
    (tmp_path / "quilt_vqa" / "quiltvqa_test_wo_ans.jsonl").write_text("")
    proc = entry(["evaluate.py", "--cfg-path", str(cfg)])
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        f"error: {tmp_path / 'quilt_vqa' / 'quiltvqa_test_wo_ans.jsonl'}: no samples for split 'test' of "
        "datasets.quilt_vqa (the file holds no records, or all were filtered out)"
    )


def test_a_data_set_whose_split_is_empty_is_an_error_for_any_builder(toy_run, entry):
    """A builder that returns an empty split (not a table): the runner's own check names it."""
    cfg = toy_run({"test_splits": ["test"]}, data={"num_questions": 0}, dataset="toy_vqa", arch="toy_vqa", task="vqa")
    proc = entry(["evaluate.py", "--cfg-path", str(cfg)])
    assert proc.returncode == 2
    assert "error: datasets.toy_vqa: split 'test' (run.test_splits) has no items: nothing to evaluate" in proc.stderr
