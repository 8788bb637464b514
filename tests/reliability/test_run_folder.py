"""A run folder holds one run: a second run is refused naming the ways on, --overwrite starts
over, a resume continues the same run (one history in metrics.jsonl), and pruning deletes only the
current run's checkpoints."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
import torch

from lavis.cli import main

RUN = {"max_epoch": 2, "batch_size_train": 8, "keep_last": 1, "init_lr": 5e-3, "log_freq": 2}


def train(cfg: Path, *args: str) -> int:
    return main("train", argv=["--cfg-path", str(cfg), *args])


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def records(out: Path, kind: str = "train") -> list[int]:
    return [r["step"] for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()) if r["type"] == kind]


def test_a_second_run_in_a_folder_holding_a_finished_run_is_refused_and_changes_nothing(toy_run, tmp_path, capsys):
    out = tmp_path / "out"
    assert train(toy_run(RUN)) == 0
    before = snapshot(out)
    capsys.readouterr()
    assert train(toy_run({**RUN, "init_lr": 1e-3})) == 2
    assert capsys.readouterr().err.strip() == (
        f"error: {out} already holds a training run (1 checkpoint(s), newest step_16; metrics.jsonl with "
        f"{len((out / 'metrics.jsonl').read_text().splitlines())} records; summary.json): continue that one with "
        "--resume auto, start it over in this folder with --overwrite (deletes its checkpoints and metrics), or set "
        "run.output_dir to a new folder"
    )
    assert snapshot(out) == before  # not a byte changed, config.yaml and run_info.json included


def test_overwrite_starts_over_and_keep_last_keeps_the_new_runs_checkpoints(toy_run, tmp_path):
    """The issue's data loss: the old run's higher step numbers made pruning delete each new checkpoint."""
    out = tmp_path / "out"
    assert train(toy_run({**RUN, "max_epoch": 3})) == 0  # steps up to 24
    assert train(toy_run(RUN), "--overwrite") == 0  # steps up to 16
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["last", "step_16"]
    assert (out / "checkpoints" / "last").resolve().name == "step_16"
    assert records(out) == [2, 4, 6, 8, 10, 12, 14, 16]  # one run's history
    info = json.loads((out / "run_info.json").read_text())
    assert info["resumed_from"] is None and len(info["run_id"]) == 16


def test_a_rerun_after_sigkill_is_refused_and_resume_auto_continues_one_history(toy_run, tmp_path, entry):
    out = tmp_path / "out"
    cfg = toy_run({**RUN, "max_epoch": 3, "save_every_n_iters": 3, "keep_last": 10})
    killed = entry(["train.py", "--cfg-path", str(cfg), "--import", "kill_switch"], env={"LAVIS_TEST_KILL_AFTER_STEP": "9"})
    assert killed.returncode == -signal.SIGKILL
    assert records(out)[-1] == 10  # logged after step 10, which no checkpoint holds
    plain = entry(["train.py", "--cfg-path", str(cfg)])
    assert plain.returncode == 2 and "already holds a training run" in plain.stderr and "--resume auto" in plain.stderr
    assert entry(["train.py", "--cfg-path", str(cfg), "--resume", "auto"]).returncode == 0
    assert records(out) == list(range(2, 25, 2))  # step 10's first record went with the lost step
    assert records(out, "checkpoint") == sorted(set(records(out, "checkpoint")))
    info = json.loads((out / "run_info.json").read_text())
    assert info["resumed_from"] == str(out / "checkpoints" / "step_9")


def test_resuming_from_a_checkpoint_that_later_ones_follow_is_refused_naming_them(toy_run, tmp_path, capsys):
    out = tmp_path / "out"
    assert train(toy_run({**RUN, "keep_last": 5})) == 0
    capsys.readouterr()
    assert train(toy_run({**RUN, "keep_last": 5}), "--resume", str(out / "checkpoints" / "step_8")) == 2
    assert capsys.readouterr().err.strip() == (
        f"error: {out / 'checkpoints'} holds checkpoints after step 8 (step_16): continuing from step_8 would replace "
        "them one by one; move them out of the folder first, or continue in a new folder (--options run.output_dir=...)"
    )


def test_resume_from_another_folder_into_a_folder_holding_a_run_is_refused(toy_run, tmp_path, capsys):
    assert train(toy_run({**RUN, "output_dir": str(tmp_path / "a")}, name="a")) == 0
    assert train(toy_run({**RUN, "output_dir": str(tmp_path / "b")}, name="b")) == 0
    capsys.readouterr()
    code = train(toy_run({**RUN, "output_dir": str(tmp_path / "b")}, name="b"), "--resume",
                 str(tmp_path / "a" / "checkpoints" / "step_16"))
    assert code == 2
    assert f"--resume {tmp_path / 'a' / 'checkpoints' / 'step_16'} continues another run" in capsys.readouterr().err


def test_pruning_deletes_only_the_current_runs_checkpoints(tmp_path):
    """Another run's checkpoints in the folder (an earlier and a later step) are neither pruned nor pointed at."""
    from types import SimpleNamespace

    from lavis.common.checkpoint import save_checkpoint
    from lavis.runners.checkpointer import Checkpointer
    from lavis.runners.run_folder import RUN_ID_KEY

    ckpt_dir = tmp_path / "checkpoints"
    for other in ("step_3", "step_30"):
        save_checkpoint(ckpt_dir / other, {"w": torch.ones(1)}, {}, {RUN_ID_KEY: "another-run"})
    checkpointer = Checkpointer(ckpt_dir)
    checkpointer._provenance = {}
    model = SimpleNamespace(trainable_state_dict=lambda: {"w": torch.zeros(1)})
    writer = SimpleNamespace(write=lambda *a, **k: None)
    for step in (5, 6):
        runner = SimpleNamespace(global_step=step, model=model, writer=writer, epoch=0, callbacks=SimpleNamespace(
            on_checkpoint=lambda *a: None), run=SimpleNamespace(keep_last=1, final_save_attempts=1,
                                                              final_save_retry_wait_s=0.0))
        checkpointer.training_state = lambda runner: {}
        assert checkpointer.save(runner) == ckpt_dir / f"step_{step}"
    assert sorted(p.name for p in ckpt_dir.iterdir()) == ["last", "step_3", "step_30", "step_6"]
    assert (ckpt_dir / "last").resolve().name == "step_6"


@pytest.mark.parametrize("option, message", [
    ("run.val_every_n_epochs=0", "config key 'run.val_every_n_epochs': 0 is out of range; allowed: an integer >= 1 "
                                 "and <= 2147483647"),
    ("run.init_lr=nan", "config key 'run.init_lr': nan is out of range; allowed: a finite number >= 0"),
    ("run.init_lr=-1e-4", "config key 'run.init_lr': -0.0001 is out of range; allowed: a finite number >= 0"),
    ("run.batch_size_train=1e20", "config key 'run.batch_size_train': 100000000000000000000 is out of range; allowed: "
                                  "an integer >= 1 and <= 2147483647"),
    ("run.generation.num_beams=-3", "config section 'run.generation': 'num_beams' must be an integer >= 1, got -3"),
    ("run.max_grad_norm=inf", "config key 'run.max_grad_norm': inf is out of range; allowed: a finite number > 0"),
], ids=["val_every_n_epochs_0", "init_lr_nan", "init_lr_negative", "batch_size_1e20", "num_beams_negative",
        "max_grad_norm_inf"])
def test_values_that_reached_torch_are_refused_where_the_config_is_read(toy_run, tmp_path, capsys, option, message):
    cfg = toy_run({"test_splits": ["test"]}, arch="toy_vqa", dataset="toy_vqa", task="vqa")
    assert main("train", argv=["--cfg-path", str(cfg), "--options", option]) == 2
    assert capsys.readouterr().err.strip() == f"error: {message}"
    assert not (tmp_path / "out").exists()  # refused before any work
