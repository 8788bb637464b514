"""A reduced `make demo`: every stage through the real entry points, and the report's schema.

The accuracy goals are checked by `make demo` itself (runs/demo/report.json), not here.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
REPORT_KEYS = {
    "closed_accuracy", "closed_accuracy_blind", "open_recall", "open_recall_blind", "open_f1",
    "trainable_params", "frozen_params", "wall_seconds",
}


def test_quick_demo_runs_every_stage_and_writes_the_report(tmp_path):
    out = tmp_path / "demo"
    proc = subprocess.run(
        [sys.executable, "run_demo.py", "--quick", "--out-dir", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert REPORT_KEYS <= set(report)
    for key in REPORT_KEYS - {"trainable_params", "frozen_params", "wall_seconds"}:
        assert 0.0 <= report[key] <= 100.0
    assert report["trainable_params"] > 0 and report["frozen_params"] > 0
    questions = (out / "data" / "quiltvqa_test_wo_ans.jsonl").read_text().splitlines()
    assert 0 < report["num_closed"] + report["num_open"] == len(questions) <= 30
    assert report["num_closed"] % 2 == 0  # closed questions come in yes/no pairs
    # the blind run really ran on blank images, with the same questions
    blind = json.loads((out / "eval_blind" / "quilt_vqa_test_eval_metrics.json").read_text())
    assert blind["num_questions"] == len(questions)
    assert "blank_image" in (out / "eval_blind" / "config.yaml").read_text()
    # each stage wrote its run folder, checkpoints and metrics through the entry points
    for stage in ("stage1", "stage2"):
        assert (out / stage / "config.yaml").exists() and list((out / stage / "checkpoints").glob("step_*"))
        assert '"type": "train"' in (out / stage / "metrics.jsonl").read_text() or stage == "stage1"
    # the frozen parts were pretrained first and are what the stages loaded
    assert (out / "pretrained" / "vision.safetensors").exists() and (out / "pretrained" / "t5" / "config.json").exists()
    assert "pretrained: " + str(out / "pretrained" / "vision.safetensors") in (out / "stage2" / "config.yaml").read_text()
    md = (out / "report.md").read_text()
    assert "| closed accuracy |" in md and "image-blind" in md
    assert (out / "loss_curves.png").stat().st_size > 1000 and (out / "samples.png").stat().st_size > 1000
    assert len(report["samples"]) >= 2
