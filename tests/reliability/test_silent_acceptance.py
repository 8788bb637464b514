"""Inputs that used to be accepted silently (or refused for the wrong reason) now do what they say."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest


@pytest.mark.parametrize("written, meant", [("off", "off"), ("on", "on"), ("auto", "auto")], ids=["off", "on", "auto"])
def test_feature_cache_on_and_off_read_by_yaml_as_booleans_are_accepted(toy_run, written, meant):
    from lavis.cli import build_parser, load

    cfg = toy_run()
    cfg.write_text(cfg.read_text().replace("run:", f"run:\n  feature_cache: {written}", 1))  # unquoted, as documented
    assert load(build_parser("t", None).parse_args(["--cfg-path", str(cfg)])).run.feature_cache == meant
    options = build_parser("t", None).parse_args(["--cfg-path", str(toy_run()), "--options", f"run.feature_cache={written}"])
    assert load(options).run.feature_cache == meant


def test_a_boolean_for_a_choice_without_on_off_words_still_names_the_yaml_rule():
    from lavis.common.errors import ConfigError
    from lavis.common.schema import from_mapping
    from lavis.runners import RunConfig

    with pytest.raises(ConfigError, match=r"'run.precision': False \(YAML reads unquoted on/off/yes/no as true/false\) "
                                          r"is not one of \['fp32', 'bf16', 'fp16'\]"):
        from_mapping(RunConfig, {"task": "vqa", "precision": False}, "run")


@pytest.mark.parametrize("option, key, closest", [
    ("model.vision.widht=3", "model.vision.widht", "width"),
    ("datasets.clover_instructions.vis_processor.train.image_sze=64", "vis_processor.train.image_sze", "image_size"),
], ids=["vision", "processor"])
def test_print_config_validates_nested_sections_first(repo_root, capsys, option, key, closest):
    from lavis.cli import main

    cfg = repo_root / "configs" / "demo" / "stage2.yaml"
    assert main("train", argv=["--cfg-path", str(cfg), "--print-config", "--options", option]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert f"unknown config key '{key}'" in captured.err and f"Did you mean '{closest}'?" in captured.err


def test_a_fifo_named_png_is_refused_without_hanging(vqa_run, tmp_path, entry):
    proc = entry(["evaluate.py", "--cfg-path", str(vqa_run({3: "fifo"}))], timeout=180)
    assert proc.returncode == 2
    assert (f"{tmp_path / 'quilt_vqa' / 'images' / 'img3.png'}: not a regular file (a FIFO (named pipe)); "
            "refused, since reading it could block") in proc.stderr


def test_runner_iter_reports_skipped_samples_when_it_ends_mid_pass(toy_run, tmp_path):
    """max_iters=3 ends the first pass after 3 of its 8 batches: those batches' skips are reported."""
    from lavis.cli import main
    from lavis.runners.data import ResumableDistributedSampler

    cfg = toy_run({"runner": "runner_iter", "max_iters": 3, "batch_size_train": 8, "seed": 42}, data={"bad_every": 8})
    assert main("train", argv=["--cfg-path", str(cfg)]) == 0
    seen = ResumableDistributedSampler(64, shuffle=True, seed=42).indices()[:24]
    expected = sum(i % 8 == 0 for i in seen)
    assert expected > 0  # the check is not vacuous
    records = [json.loads(line) for line in (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()]
    data = [r for r in records if r["type"] == "data"]
    assert [(r["step"], r["skipped"]) for r in data] == [(3, expected)]


def test_a_yes_no_answer_other_than_yes_or_no_is_refused(tmp_path, capsys):
    from lavis.metrics.vqa.__main__ import main

    gt = [{"id": "q1", "answer": "Yes, there is necrosis.", "answer_type": "CLOSED", "yes_no_answer": "yes"},
          {"id": "q2", "answer": "It is unclear.", "answer_type": "CLOSED", "yes_no_answer": "maybe"}]
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "pred.jsonl").write_text('{"question_id": "q1", "text": "yes"}\n{"question_id": "q2", "text": "no"}\n')
    assert main(["--protocol", "strict", "--gt", str(tmp_path / "gt.json"), "--pred", str(tmp_path / "pred.jsonl")]) == 1
    assert capsys.readouterr().err.strip() == (
        f"error: {tmp_path / 'gt.json'}: item 1: field 'yes_no_answer' must be yes or no for a closed question, "
        "got 'maybe'"
    )


def _instructions(tmp_path: Path, rows: str, *extra: str) -> int:
    from lavis.instructions.cli import main

    (tmp_path / "captions.csv").write_text("caption,image_path,subset,split\n" + rows)
    return main(["--captions", str(tmp_path / "captions.csv"), "--out", str(tmp_path / "out"), "--mode", "template",
                 "--no-progress", *extra])


def test_instruction_image_paths_that_escape_the_data_root_are_refused(tmp_path, capsys):
    rows = "Glands in the colon.,a.png,quilt,train\nTumour nests.,../../home/user/b.png,quilt,train\n"
    assert _instructions(tmp_path, rows) == 2
    assert capsys.readouterr().err.strip() == (
        f"ERROR: {tmp_path / 'captions.csv'}: row 1, field 'image_path or image': image path '../../home/user/b.png' "
        f"escapes the data root {tmp_path} (1 such path(s)); image paths must be relative to the root without '..'"
    )
    assert not (tmp_path / "out" / "instructions.jsonl").exists()


def test_a_subset_that_matches_nothing_is_refused(tmp_path, capsys):
    rows = "Glands in the colon.,a.png,quilt,train\nTumour nests.,b.png,openpath,train\n"
    assert _instructions(tmp_path, rows, "--subset", "quilt_1m") == 2
    assert capsys.readouterr().err.strip() == (
        f"ERROR: {tmp_path / 'captions.csv'}: no caption matches --subset quilt_1m (subset values in the file: "
        "['openpath', 'quilt']; split values in the file: ['train'])"
    )
    assert not (tmp_path / "out" / "instructions.jsonl").exists()


def test_output_files_honour_the_umask(toy_run, tmp_path):
    """Checkpoints, results and run files get the modes open/mkdir would give: a team sharing
    the folder (umask 002 or 022) can read them."""
    from lavis.cli import main

    cfg = toy_run({"max_epoch": 1, "valid_splits": ["val"], "test_splits": ["val"]})
    previous = os.umask(0o002)
    try:
        assert main("train", argv=["--cfg-path", str(cfg)]) == 0
    finally:
        os.umask(previous)
    out = tmp_path / "out"
    files = [out / "config.yaml", out / "run_info.json", out / "summary.json", out / "metrics.jsonl",
             out / "checkpoints" / "step_8" / "model.safetensors", out / "checkpoints" / "step_8" / "state.pt",
             out / "checkpoints" / "best" / "model.safetensors"]
    folders = [out / "checkpoints" / "step_8", out / "checkpoints" / "best"]
    assert {str(p.relative_to(out)): oct(p.stat().st_mode & 0o777) for p in files} == {
        str(p.relative_to(out)): "0o664" for p in files}
    assert {str(p.relative_to(out)): oct(p.stat().st_mode & 0o777) for p in folders} == {
        str(p.relative_to(out)): "0o775" for p in folders}


@pytest.mark.parametrize("umask, file_mode, folder_mode", [(0o022, 0o644, 0o755), (0o077, 0o600, 0o700)],
                         ids=["umask022", "umask077"])
def test_atomic_writes_follow_the_umask(tmp_path, umask, file_mode, folder_mode):
    import torch

    from lavis.common.checkpoint import atomic_write_text, save_checkpoint

    previous = os.umask(umask)
    try:
        atomic_write_text(tmp_path / "metrics.json", "{}")
        folder = save_checkpoint(tmp_path / "step_1", {"w": torch.zeros(2)}, {"step": 1})
    finally:
        os.umask(previous)
    assert (tmp_path / "metrics.json").stat().st_mode & 0o777 == file_mode
    assert folder.stat().st_mode & 0o777 == folder_mode
    assert {p.name: p.stat().st_mode & 0o777 for p in folder.iterdir()} == {
        "model.safetensors": file_mode, "state.pt": file_mode}
