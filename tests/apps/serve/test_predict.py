"""``lavis.apps.predict``: its answer file, scored by ``python -m lavis.metrics.vqa``, gives exactly
evaluate.py's metrics on the same model and questions; it resumes after a crash mid-line; it reads
LLaVA-Med conversation files and image folders."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[3]
GENERATION = {"num_beams": 2, "max_new_tokens": 6, "min_new_tokens": 1}
ARGS = ["--generation", *(f"{k}={v}" for k, v in GENERATION.items()), "--no-progress"]


def storage_of(tiny_run: Path) -> Path:
    return Path(yaml.safe_load((tiny_run.parent.parent / "config.yaml").read_text())["datasets"]["quilt_vqa"]["storage"])


def score(gt: Path, pred: Path, protocol: str, capsys) -> dict:
    from lavis.metrics.vqa.__main__ import main

    capsys.readouterr()
    assert main(["--protocol", protocol, "--gt", str(gt), "--pred", str(pred)]) == 0
    return json.loads(capsys.readouterr().out)


def test_predict_scored_by_the_metrics_cli_equals_evaluate(tiny_run, tmp_path, capsys):
    from lavis.apps.predict import main

    storage = storage_of(tiny_run)
    run_config = yaml.safe_load((tiny_run.parent.parent / "config.yaml").read_text())
    eval_config = {
        "model": {**run_config["model"], "checkpoint": str(tiny_run)},
        "datasets": run_config["datasets"],
        "run": {"task": "vqa", "output_dir": str(tmp_path / "eval"), "test_splits": ["test"], "batch_size_eval": 4,
                "num_workers": 0, "device": "cpu", "progress_bar": False, "protocols": ["quilt", "llava_med", "strict"],
                "generation": GENERATION},
    }
    (tmp_path / "eval.yaml").write_text(yaml.safe_dump(eval_config))
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "evaluate.py", "--cfg-path", str(tmp_path / "eval.yaml")], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    evaluated = json.loads(next((tmp_path / "eval").glob("*_metrics.json")).read_text())["protocols"]

    out = tmp_path / "answers.jsonl"
    assert main(["--model", str(tiny_run), "--questions", str(storage / "quiltvqa_test_wo_ans.jsonl"),
                 "--out", str(out), "--batch-size", "5", *ARGS]) == 0
    for protocol in ("quilt", "llava_med", "strict"):
        scored = score(storage / "quiltvqa_test_w_ans.json", out, protocol, capsys)
        # evaluate.py adds what each protocol's denominator held; the scores themselves must agree
        counted = {k: v for k, v in evaluated[protocol].items() if k not in ("num_scored", "skipped_ids")}
        assert scored == counted, protocol
        assert evaluated[protocol]["num_scored"] + len(evaluated[protocol]["skipped_ids"]) == 16
    ours = {r["question_id"]: r["text"] for r in map(json.loads, out.read_text().splitlines())}
    theirs = next((tmp_path / "eval").glob("*_answers.jsonl")).read_text().splitlines()
    assert ours == {r["question_id"]: r["text"] for r in map(json.loads, theirs)}  # answer for answer


def test_predict_resumes_after_a_crash_mid_line(tiny_run, tmp_path):
    from lavis.apps.predict import main

    questions = storage_of(tiny_run) / "quiltvqa_test_wo_ans.jsonl"
    full = tmp_path / "full.jsonl"
    assert main(["--model", str(tiny_run), "--questions", str(questions), "--out", str(full), "--yes-no", *ARGS]) == 0
    lines = full.read_text().splitlines(keepends=True)
    assert len(lines) == 16 and not (tmp_path / ".full.jsonl.lock").exists()
    record = json.loads(lines[0])
    assert set(record) == {"question_id", "prompt", "text", "answer_id", "model_id", "metadata"}
    assert record["metadata"]["image"] == "test/tile_0.png" and "yes_no" in record["metadata"]

    partial = tmp_path / "partial.jsonl"
    partial.write_text("".join(lines[:5]) + lines[5][:17])  # killed while writing line 6
    assert main(["--model", str(tiny_run), "--questions", str(questions), "--out", str(partial), "--yes-no",
                 *ARGS]) == 0
    assert partial.read_text() == full.read_text()
    assert main(["--model", str(tiny_run), "--questions", str(questions), "--out", str(partial), *ARGS]) == 0
    assert partial.read_text() == full.read_text()  # nothing left to do


def test_predict_reads_conversation_files_and_image_folders(tiny_run, tmp_path, tiles, capsys):
    from lavis.apps.predict import main

    conversations = [{"id": f"c{i}", "image": tile.name, "answer_type": "CLOSED",
                      "conversations": [{"from": "human", "value": "<image>\nis the tissue dense"},
                                        {"from": "gpt", "value": "no"}]} for i, tile in enumerate(tiles[:3])]
    (tmp_path / "test.json").write_text(json.dumps(conversations))
    out = tmp_path / "llava.jsonl"
    assert main(["--model", str(tiny_run), "--questions", str(tmp_path / "test.json"), "--image-dir",
                 str(tiles[0].parent), "--out", str(out), *ARGS]) == 0
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["question_id"] for r in records] == ["c0", "c1", "c2"]
    assert all(r["prompt"] == "is the tissue dense" for r in records)
    assert score(tmp_path / "test.json", out, "llava_med", capsys)["num_closed"] == 3

    folder = tmp_path / "folder.jsonl"
    assert main(["--model", str(tiny_run), "--images", str(tiles[0].parent), "--question", "which stain is used",
                 "--out", str(folder), *ARGS]) == 0
    assert [json.loads(line)["question_id"] for line in folder.read_text().splitlines()] == [t.name for t in tiles]

    capsys.readouterr()
    assert main(["--model", str(tiny_run), "--questions", str(tmp_path / "test.json"), "--out",
                 str(tmp_path / "x.jsonl"), *ARGS]) == 2  # images are not beside the file
    assert "image 'tile_0.png' not found" in capsys.readouterr().err


def test_predict_follows_the_conversation_contract(tiny_run, multi_turn_run, tmp_path, tiles):
    """A conversation file's second question: alone for a single-turn model, after the reference
    first turn for a model tuned on conversations (as evaluation feeds it)."""
    from lavis.apps.predict import main

    record = {"id": "c0", "image": tiles[0].name, "conversations": [
        {"from": "human", "value": "<image>\nis the tissue dense"}, {"from": "gpt", "value": "no"},
        {"from": "human", "value": "which stain is used"}, {"from": "gpt", "value": "hematoxylin and eosin"}]}
    (tmp_path / "test.json").write_text(json.dumps([record]))
    prompts = {}
    for label, run in (("single", tiny_run), ("multi", multi_turn_run)):
        out = tmp_path / f"{label}.jsonl"
        assert main(["--model", str(run), "--questions", str(tmp_path / "test.json"), "--image-dir",
                     str(tiles[0].parent), "--out", str(out), *ARGS]) == 0
        prompts[label] = [json.loads(line)["prompt"] for line in out.read_text().splitlines()]
    assert prompts["single"] == ["is the tissue dense", "which stain is used"]
    assert prompts["multi"] == ["is the tissue dense", "Q: is the tissue dense A: no Q: which stain is used"]


def test_example_tiles_with_tissue_come_before_nearly_blank_ones(tmp_path, tiles):
    """The page's examples skip tiles that are mostly glass when there are enough with tissue."""
    import shutil

    from PIL import Image

    from lavis.apps.serve.examples import load_examples

    for i, tile in enumerate(tiles[:4]):
        shutil.copy(tile, tmp_path / f"tissue_{i}.png")
    for i in range(3):
        Image.new("RGB", (64, 64), (244, 242, 246)).save(tmp_path / f"glass_{i}.png")
    assert sorted(e.name for e in load_examples(tmp_path, limit=4)) == [f"tissue_{i}.png" for i in range(4)]
    assert len(load_examples(tmp_path, limit=6)) == 6  # not enough with tissue: the blank ones fill in
