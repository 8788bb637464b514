"""Callbacks: the EMA example of docs/training.md runs as printed through train.py (and resumes
bit-identically), the shipped early_stopping rule ends a run and resumes with its count, and a
misconfigured callback fails at start naming the key."""

from __future__ import annotations

import json
import re
import signal

import torch
from safetensors.torch import load_file

from tests.runners.conftest import REPO

EMA_RUN = {"max_epoch": 2, "batch_size_train": 16, "init_lr": 5e-3, "save_every_n_iters": 1, "keep_last": 100,
           "log_freq": 4, "callbacks": [{"name": "ema", "decay": 0.9}]}


def write_ema_module(folder):
    """The module block of docs/training.md, written to the file its first line names."""
    text = (REPO / "docs" / "training.md").read_text()
    code = next(block for block in re.findall(r"```python\n(.*?)```", text, flags=re.S) if block.startswith("# my_lab/ema.py"))
    (folder / "my_lab").mkdir(parents=True)
    (folder / "my_lab" / "ema.py").write_text(code)
    return folder


def initial_weights(cfg_path):
    """The trainable weights a run of ``cfg_path`` starts from (the entry point seeds, then builds)."""
    from lavis.common.seeding import seed_everything
    from lavis.runners.assemble import build_parts, load_run_config

    cfg = load_run_config(str(cfg_path), ["run.callbacks=[]"])  # the callbacks do not change the start
    seed_everything(cfg.run.seed)
    _, model, _ = build_parts(cfg)
    return {name: p.detach().float().clone() for name, p in model.trainable_named_parameters()}


def test_the_ema_example_averages_every_step_and_resumes_bit_identically(toy_cfg, tmp_path, launch):
    plugins = write_ema_module(tmp_path / "lab")
    straight = toy_cfg({**EMA_RUN, "output_dir": str(tmp_path / "straight")})
    launch(["train.py", "--cfg-path", str(straight), "--import", "my_lab.ema"], extra_path=plugins)
    ema = load_file(str(tmp_path / "straight" / "ema" / "model.safetensors"))

    average = initial_weights(straight)
    for step in range(1, 9):  # 64 samples / 16 per batch x 2 epochs: every step's weights are on disk
        weights = load_file(str(tmp_path / "straight" / "checkpoints" / f"step_{step}" / "model.safetensors"))
        for name, avg in average.items():
            avg.lerp_(weights[name].float(), 1.0 - 0.9)
    assert ema.keys() == average.keys()
    for name in ema:
        assert torch.equal(ema[name], average[name]), name
    assert not torch.equal(ema["head.0.weight"], weights["head.0.weight"])  # an average, not the last weights

    killed_cfg = toy_cfg({**EMA_RUN, "output_dir": str(tmp_path / "killed")})
    killed = launch(["train.py", "--cfg-path", str(killed_cfg), "--import", "my_lab.ema", "--import", "kill_switch"],
                    check=False, extra_path=plugins, env={"LAVIS_TEST_KILL_AFTER_STEP": "5"})
    assert killed.returncode == -signal.SIGKILL and not (tmp_path / "killed" / "ema").exists()
    launch(["train.py", "--cfg-path", str(killed_cfg), "--import", "my_lab.ema", "--resume", "auto"], extra_path=plugins)
    resumed = load_file(str(tmp_path / "killed" / "ema" / "model.safetensors"))
    assert all(torch.equal(resumed[name], ema[name]) for name in ema)


def test_early_stopping_ends_the_run_and_a_resume_keeps_its_count(toy_cfg, tmp_path, launch):
    # lr 0: the validation loss never improves, so the rule stops after the third validation
    run = {"max_epoch": 10, "batch_size_train": 8, "init_lr": 0.0, "valid_splits": ["val"], "test_splits": ["val"],
           "keep_last": 10, "callbacks": [{"name": "early_stopping", "patience": 2}]}
    launch(["train.py", "--cfg-path", str(toy_cfg({**run, "output_dir": str(tmp_path / "a")}))])
    log = [json.loads(line) for line in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    stopped = [r for r in log if r["type"] == "stopped"]
    assert [r["step"] for r in stopped] == [24] and stopped[0]["reason"].startswith(
        "early_stopping: run.best_metric agg_metrics has not improved on ")
    assert [r["epoch"] for r in log if r["type"] == "eval"] == [0, 1, 2, "best"]  # then the test split, as finished
    assert json.loads((tmp_path / "a" / "summary.json").read_text())["global_step"] == 24

    # continued in another folder from step 16 (one validation without improvement so far): stops at 24 too
    resumed = toy_cfg({**run, "output_dir": str(tmp_path / "b"), "resume": str(tmp_path / "a" / "checkpoints" / "step_16")})
    launch(["train.py", "--cfg-path", str(resumed)])
    assert json.loads((tmp_path / "b" / "summary.json").read_text())["global_step"] == 24


def test_an_unknown_callback_or_key_fails_at_start_naming_it(toy_cfg, launch):
    cfg = toy_cfg({"callbacks": [{"name": "early_stoping"}]})
    proc = launch(["train.py", "--cfg-path", str(cfg)], check=False)
    assert proc.returncode == 2
    assert "run.callbacks[0].name: unknown callback 'early_stoping'. Did you mean 'early_stopping'?" in proc.stderr
    cfg = toy_cfg({"callbacks": [{"name": "early_stopping", "patiense": 2}]})
    proc = launch(["train.py", "--cfg-path", str(cfg)], check=False)
    assert "unknown config key 'run.callbacks[0].patiense'" in proc.stderr and "Did you mean 'patience'?" in proc.stderr
