"""Kill a run with SIGKILL mid-epoch, resume it, and get bit-identical weights."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file


def last_weights(out_dir):
    steps = sorted((out_dir / "checkpoints").glob("step_*"), key=lambda p: int(p.name.split("_")[1]))
    return steps[-1].name, load_file(str(steps[-1] / "model.safetensors"))


def kill_after(marker, cmd, repo, env, timeout=240):
    """Start ``cmd``; SIGKILL it as soon as ``marker`` exists (a checkpoint folder)."""
    proc = subprocess.Popen(cmd, cwd=repo, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.time() + timeout
    while not marker.exists():
        if proc.poll() is not None:
            raise AssertionError(f"run ended before {marker.name} appeared:\n{proc.stdout.read().decode()[-3000:]}")
        if time.time() > deadline:
            proc.kill()
            raise AssertionError("timed out waiting for the checkpoint")
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return proc


@pytest.mark.parametrize("runner, workers", [("runner_epoch", 2), ("runner_iter", 0)])
def test_sigkill_mid_epoch_then_resume_is_bit_identical(toy_cfg, tmp_path, launch, entry_env, runner, workers):
    repo, env = entry_env
    run = {
        "runner": runner,
        "max_epoch": 3,
        "max_iters": 20,  # runner_iter: 2.5 passes over 8 batches
        "iters_per_inner_epoch": 7,
        "batch_size_train": 8,
        "num_workers": workers,
        "init_lr": 5e-3,
        "warmup_steps": 4,
        "save_every_n_iters": 3,
        "keep_last": 10,
        "log_freq": 5,
    }
    model = {"dropout": 0.3}  # model RNG must be restored too
    data = {"noise": 0.1}  # and augmentation must not depend on how far a worker got

    straight = toy_cfg({**run, "output_dir": str(tmp_path / "straight")}, model=model, data=data)
    launch(["train.py", "--cfg-path", str(straight)])

    out = tmp_path / "killed"
    slow = toy_cfg({**run, "output_dir": str(out)}, model={**model, "sleep_s": 0.15}, data=data)
    proc = kill_after(out / "checkpoints" / "step_9", [sys.executable, "train.py", "--cfg-path", str(slow)], repo, env)
    assert proc.returncode == -signal.SIGKILL
    # step 9 is one step into epoch 1 (8 steps per epoch): a mid-epoch resume point
    resumed = toy_cfg({**run, "output_dir": str(out)}, model=model, data=data)
    proc = launch(["train.py", "--cfg-path", str(resumed), "--resume", "auto"])
    # it really continued mid-run (a fresh start would also end identical, proving nothing)
    match = re.search(r"resumed from \S+ at epoch (\d+), batch (\d+), step (\d+)", proc.stdout)
    assert match, proc.stdout[-2000:]
    assert int(match.group(3)) >= 9
    if runner == "runner_epoch":
        assert int(match.group(2)) % 8 != 0 or int(match.group(3)) > 9  # mid-epoch unless killed later

    name_a, a = last_weights(tmp_path / "straight")
    name_b, b = last_weights(out)
    assert name_a == name_b
    for key in a:
        assert torch.equal(a[key], b[key]), key
    log = (out / "metrics.jsonl").read_text()
    assert '"type": "checkpoint"' in log
