"""Evaluation sorted by prompt length (ranked closed questions in batches of their own): the same
answers, written in the data set's order, as an unsorted evaluation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

WORDS = "the tissue shows glands lined by columnar epithelium with crowded nuclei and stroma".split()


@pytest.fixture
def quilt_storage(tmp_path) -> Path:
    """QUILT-VQA release layout: 12 questions of 2 to 24 words, 5 closed, over 6 images."""
    root = tmp_path / "quilt"
    (root / "images").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(6):
        Image.fromarray(rng.integers(0, 256, (64, 80, 3), dtype=np.uint8)).save(root / "images" / f"i{i}.jpg")
    questions, answers = [], []
    for q in range(12):
        words = [WORDS[(q + k) % len(WORDS)] for k in range(2 + (q * 7) % 23)]
        closed = q % 12 in (1, 4, 6, 9, 11)
        questions.append({"question_id": f"q{q}", "image": f"i{q % 6}.jpg", "text": " ".join(words) + "?"})
        answers.append({"id": f"q{q}", "answer": ("Yes, " if q % 2 else "No, ") + " ".join(words[:3]),
                        "answer_type": "CLOSED" if closed else "OPEN",
                        **({"yes_no_answer": "no" if q % 2 == 0 else "yes"} if closed else {})})
    (root / "quiltvqa_test_wo_ans.jsonl").write_text("\n".join(json.dumps(q) for q in questions) + "\n")
    (root / "quiltvqa_test_w_ans.json").write_text(json.dumps(answers))
    return root


@pytest.fixture
def eval_yaml(tmp_path, quilt_storage, tiny_t5_folder, assets):
    def make(name: str, **run) -> Path:
        cfg = {
            "model": {"arch": "blip2_t5_instruct", "model_type": "tiny",
                      "qformer": {"tokenizer": str(assets.qformer_tokenizer)},
                      "llm": {"name_or_path": str(tiny_t5_folder)}},
            "datasets": {"quilt_vqa": {"storage": str(quilt_storage),
                                       "vis_processor": {"eval": {"name": "pathology_image_eval", "image_size": 56}}}},
            "run": {"task": "vqa", "output_dir": str(tmp_path / name), "device": "cpu", "num_workers": 0,
                    "progress_bar": False, "batch_size_eval": 4, "test_splits": ["test"], "seed": 0,
                    "protocols": ["quilt", "strict"], "closed_method": "rank",
                    "generation": {"num_beams": 3, "max_new_tokens": 6, "min_new_tokens": 2},
                    "feature_cache_dir": str(tmp_path / "cache"), **run},
        }
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(cfg))
        return path

    return make


def test_eval_batches_are_grouped_by_type_and_sorted_longest_first(eval_yaml):
    from lavis.cli import build_parser, load
    from lavis.runners import RUNNERS
    from lavis.tasks import TASKS

    cfg = load(build_parser("evaluate", None).parse_args(["--cfg-path", str(eval_yaml("order"))]), ["run.evaluate=true"])
    task = TASKS.get(cfg.run.task)(cfg.task)
    runner = RUNNERS.get(cfg.run.runner)(cfg, task, task.build_model(cfg), task.build_datasets(cfg))
    (_, dataset), = runner.validation.eval_sets(runner, ["test"])
    loader, _ = runner.data.loader(dataset, train=False)
    batches = list(loader)
    types = [t for b in batches for t in b["answer_type"]]
    assert types == sorted(types)  # CLOSED rows first, then OPEN: no batch mixes ranked and generated rows
    for kind in ("CLOSED", "OPEN"):
        lengths = [len(q) for b in batches for q, t in zip(b["text_input"], b["answer_type"]) if t == kind]
        assert lengths == sorted(lengths, reverse=True)


def test_sorted_evaluation_gives_the_unsorted_answers_in_file_order(tmp_path, eval_yaml):
    from lavis.cli import main

    for name, sort in (("sorted", True), ("unsorted", False)):
        assert main("evaluate", evaluate_only=True,
                    argv=["--cfg-path", str(eval_yaml(name, eval_sort_by_length=sort))]) == 0
    sorted_rows, unsorted_rows = (
        [json.loads(line) for line in (tmp_path / name / "quilt_vqa_test_eval_answers.jsonl").read_text().splitlines()]
        for name in ("sorted", "unsorted")
    )
    assert [r["question_id"] for r in sorted_rows] == [f"q{i}" for i in range(12)]
    assert [(r["question_id"], r["text"]) for r in sorted_rows] == [(r["question_id"], r["text"]) for r in unsorted_rows]
    assert {r["text"] for r in sorted_rows if r["metadata"]["answer_type"] == "CLOSED"} <= {"yes", "no"}
