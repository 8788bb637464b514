"""evaluate.py under torchrun scores every question exactly once, like one process."""

from __future__ import annotations

import json

import yaml


def write_cfg(tmp_path, name, closed_method="generate"):
    cfg = {
        "model": {"arch": "toy_vqa"},
        "datasets": {"toy_vqa": {"num_questions": 13}},  # odd: the sampler must pad on 2 ranks
        "run": {
            "task": "vqa", "imports": ["toy_components"], "output_dir": str(tmp_path / name),
            "batch_size_eval": 2, "num_workers": 0, "device": "cpu", "progress_bar": False,
            "test_splits": ["test"], "protocols": ["llava_med", "quilt", "strict"],
            "closed_method": closed_method, "generation": {"num_beams": 1},
        },
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_two_process_evaluation_equals_one_process(tmp_path, launch):
    launch(["evaluate.py", "--cfg-path", str(write_cfg(tmp_path, "one"))])
    launch(["evaluate.py", "--cfg-path", str(write_cfg(tmp_path, "two"))], nproc=2)
    answers = {}
    for name in ("one", "two"):
        rows = [json.loads(x) for x in (tmp_path / name / "toy_vqa_test_eval_answers.jsonl").read_text().splitlines()]
        answers[name] = sorted(rows, key=lambda r: r["question_id"])
        assert len(rows) == 13 and len({r["question_id"] for r in rows}) == 13
    assert answers["one"] == answers["two"]
    metrics = [json.loads((tmp_path / n / "toy_vqa_test_eval_metrics.json").read_text()) for n in ("one", "two")]
    assert metrics[0]["protocols"] == metrics[1]["protocols"]
    llava = metrics[0]["protocols"]["llava_med"]
    assert llava["num_open"] == 5 and llava["num_closed"] == 8
    assert metrics[0]["generation"]["num_beams"] == 1
    table = (tmp_path / "two" / "toy_vqa_test_eval_metrics.md").read_text()
    assert "| llava_med |" in table and "| strict |" in table


def test_rank_method_for_closed_questions(tmp_path, launch):
    launch(["evaluate.py", "--cfg-path", str(write_cfg(tmp_path, "rank", closed_method="rank"))])
    rows = [json.loads(x) for x in (tmp_path / "rank" / "toy_vqa_test_eval_answers.jsonl").read_text().splitlines()]
    closed = [r for r in rows if r["metadata"]["answer_type"] == "CLOSED"]
    assert {r["text"] for r in closed} <= {"yes", "no"}
