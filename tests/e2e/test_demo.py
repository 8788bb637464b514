"""A reduced `make demo`: every stage through the real entry points, the report's schema, the goal check.

`--quick` trains too little to answer, so its goals are missed: run with `check_goals=true` it must
exit 1 naming them (the path `make demo` takes when a goal is missed). The accuracy goals themselves
are measured by `make demo` (runs/demo/report.json), not here.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ATTRIBUTES = {"tissue_fraction", "tissue_density", "stain", "dab_staining"}  # magnification: not asked by default
REPORT_KEYS = {
    "closed_accuracy", "closed_accuracy_ci95", "closed_accuracy_question_only", "closed_accuracy_blind",
    "open_recall", "open_recall_ci95", "open_recall_question_only", "open_recall_blind", "open_f1",
    "num_test_tiles", "by_attribute", "density_spearman", "validation", "by_protocol",
    "trainable_params", "frozen_params", "wall_seconds", "cpu_seconds", "goals",
    "closed_accuracy_heldout_wording", "closed_accuracy_heldout_wording_ci95", "open_recall_heldout_wording",
    "open_recall_heldout_wording_ci95", "followup_closed_accuracy", "followup_alone_closed_accuracy",
    "verdict_confidence_agreement", "served", "heldout_wording",
}
ATTRIBUTE_KEYS = {"closed_accuracy", "closed_accuracy_ci95", "open_recall", "open_recall_ci95", "num_closed",
                  "num_open", "num_tiles"}


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_quick_demo_runs_every_stage_writes_the_report_and_fails_on_missed_goals(tmp_path):
    out = tmp_path / "demo"
    proc = subprocess.run(
        [sys.executable, "run_demo.py", "--quick", "--out-dir", str(out), "--set", "check_goals=true"],
        cwd=REPO, capture_output=True, text=True, timeout=900,
    )
    # a quick model misses its goals: exit 1, each missed goal named
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "goal missed: closed accuracy (strict, test)" in proc.stderr
    assert re.search(r"goal missed: (tissue_fraction|tissue_density|stain|dab_staining) (closed accuracy|open recall)",
                     proc.stderr), proc.stderr[-3000:]

    report = json.loads((out / "report.json").read_text())
    assert REPORT_KEYS <= set(report), REPORT_KEYS - set(report)
    assert report["protocol"] == "strict" and report["goals"]["missed"] and not report["goals"]["met"]
    for key in ("closed_accuracy", "closed_accuracy_question_only", "open_recall", "open_recall_question_only"):
        assert 0.0 <= report[key] <= 100.0
    low, high = report["closed_accuracy_ci95"]
    assert low <= report["closed_accuracy"] <= high
    assert set(report["by_attribute"]) == ATTRIBUTES
    for scores in report["by_attribute"].values():
        assert ATTRIBUTE_KEYS <= set(scores) and scores["num_closed"] > 0 and scores["num_open"] > 0
    assert set(report["by_protocol"]["image"]) == {"quilt", "strict", "llava_med"}
    assert report["by_protocol"]["image"]["strict"]["closed_accuracy"] == report["closed_accuracy"]

    # the test files: closed questions in yes/no pairs, each asked again in a held-out wording
    test_truth = json.loads((out / "data" / "quiltvqa_test_w_ans.json").read_text())
    wordings = json.loads((out / "data" / "question_wordings.json").read_text())
    template = [q for q in test_truth if wordings[q["id"]] == "template"]
    heldout = [q for q in test_truth if wordings[q["id"]] == "heldout"]
    assert report["num_closed"] + report["num_open"] == len(template) and len(heldout) == len(template)
    closed = [q for q in test_truth if q["answer_type"] == "CLOSED"]
    assert sum(q["yes_no_answer"] == "yes" for q in closed) * 2 == len(closed)

    # held-out wordings: never a training wording (instructions or the LM's corpus), val and test apart
    def questions(name: str) -> set[str]:
        return {r.get("question", r.get("text")) for r in _rows(out / "data" / name)}

    trained = questions("instructions.jsonl") | questions("language_corpus.jsonl")
    test_heldout = {q["text"] for q in _rows(out / "data" / "quiltvqa_test_wo_ans.jsonl") if wordings[q["question_id"]] == "heldout"}
    val_heldout = {q["text"] for q in _rows(out / "data" / "quiltvqa_val_wo_ans.jsonl") if wordings[q["question_id"]] == "heldout"}
    assert test_heldout and val_heldout and not (test_heldout | val_heldout) & trained and not test_heldout & val_heldout
    assert {r["source"] for r in _rows(out / "data" / "instructions.jsonl")} == {"template", "generated"}

    # the served measurement: every held-out test question alone, every closed one as a follow-up
    served = [json.loads(line) for line in (out / "served" / "answers.jsonl").read_text().splitlines()]
    alone = [r for r in served if r["mode"] == "alone"]
    followups = [r for r in served if r["mode"] == "followup"]
    assert {r["question_id"] for r in alone} == {q["id"] for q in heldout}
    assert {r["question_id"] for r in followups} == {q["id"] for q in heldout if q["answer_type"] == "CLOSED"}
    assert all(r["earlier"]["question"] != r["question"] and r["earlier"]["answer"] is not None for r in followups)
    assert report["served"]["num_closed_answers_checked"] == len(followups) * 2
    assert 0.0 <= report["verdict_confidence_agreement"] <= 100.0
    assert "## Held-out wordings and follow-ups" in (out / "report.md").read_text()
    assert "Not asked: magnification" in (out / "report.md").read_text()
    images = {q["image"] for q in _rows(out / "data" / "quiltvqa_test_wo_ans.jsonl")}
    assert report["num_test_tiles"] == len(images) and all(i.startswith("test/") for i in images)
    assert all(q["image"].startswith("val/") for q in _rows(out / "data" / "quiltvqa_val_wo_ans.jsonl"))

    # every stage ran through its entry point and logged metrics
    for stage in ("stage1", "stage2", "stage2_question_only"):
        rows = _rows(out / stage / "metrics.jsonl")
        assert any(r["type"] == "train" and r.get("loss", float("nan")) > 0 for r in rows), stage
        assert list((out / stage / "checkpoints").glob("step_*")), stage
    for stage in ("stage2", "stage2_question_only"):  # checkpoint choice on the validation split
        assert any(r["type"] == "eval" and "val" in json.dumps(r) for r in _rows(out / stage / "metrics.jsonl"))
        assert (out / stage / "checkpoints" / "best").is_dir()
    for run, split in (("eval", "test"), ("eval_question_only", "test"), ("eval_blind", "test"), ("eval_val", "val")):
        metrics = json.loads((out / run / f"quilt_vqa_{split}_eval_metrics.json").read_text())
        expected = len(_rows(out / "data" / f"quiltvqa_{split}_wo_ans.jsonl"))
        assert metrics["num_questions"] == expected, run
        assert set(metrics["protocols"]) == {"quilt", "strict", "llava_med"}

    # the question-only model was trained and evaluated on blank images; the seeing one was not
    blind_training = (out / "stage2_question_only" / "config.yaml").read_text()
    assert blind_training.count("blank_image") == 2  # the train and the eval processor
    assert "blank_image" not in (out / "stage2" / "config.yaml").read_text()
    assert "blank_image" in (out / "eval_question_only" / "config.yaml").read_text()
    assert "stage2_question_only" in (out / "eval_question_only" / "config.yaml").read_text()

    # the frozen parts were pretrained first and are what the stages loaded
    assert (out / "pretrained" / "vision.safetensors").exists() and (out / "pretrained" / "t5" / "config.json").exists()
    assert "pretrained: " + str(out / "pretrained" / "vision.safetensors") in (out / "stage2" / "config.yaml").read_text()

    density = json.loads((out / "density_check.json").read_text())
    assert 0 < len(density["fields"]) <= 8 and all(0.0 <= f["p_yes"] <= 1.0 for f in density["fields"])
    md = (out / "report.md").read_text()
    assert "| closed accuracy |" in md and "question-only model" in md and "## Per attribute (test)" in md
    for name in ATTRIBUTES:
        assert f"| {name} |" in md
    assert (out / "loss_curves.png").stat().st_size > 1000 and (out / "samples.png").stat().st_size > 1000
    assert len(report["samples"]) >= 2

    # the diagnosis runs on a finished run: probes on the encoder and on the Q-Former's LM prefix
    proc = subprocess.run([sys.executable, "-m", "lavis.apps.demo.diagnose", "--run", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    diagnosis = json.loads((out / "diagnosis.json").read_text())
    assert set(diagnosis) == {"encoder_probe", "encoder_probe_random", "qformer_probe", "lm_with_caption"}
    for probe in ("encoder_probe", "qformer_probe"):
        assert set(diagnosis[probe]) <= ATTRIBUTES and diagnosis[probe], probe
        for scores in diagnosis[probe].values():
            assert scores["n_train"] > 0 and scores["n_val"] > 0
            assert scores["accuracy"] is None or 0.0 <= scores["accuracy"] <= 100.0
