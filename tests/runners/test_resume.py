"""Kill a run with SIGKILL mid-epoch, resume it, and get bit-identical weights.

The run kills itself (``tests/plugins/kill_switch.py``) right after taking optimizer step 10 in
memory, so the last checkpoint is always step 9 and the resume point is known exactly; a kill
timed from outside could land after a later checkpoint and make the test accept either outcome.
The real model (stage 1 and stage 2) goes through the same test in test_blip2_runs.py.
"""

from __future__ import annotations

import re
import signal

import pytest
import torch
from safetensors.torch import load_file


def last_weights(out_dir):
    steps = sorted((out_dir / "checkpoints").glob("step_*"), key=lambda p: int(p.name.split("_")[1]))
    return steps[-1].name, load_file(str(steps[-1] / "model.safetensors"))


@pytest.mark.parametrize("runner, workers", [("runner_epoch", 2), ("runner_iter", 0)])
def test_sigkill_mid_epoch_then_resume_is_bit_identical(toy_cfg, tmp_path, launch, runner, workers):
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
    cfg = toy_cfg({**run, "output_dir": str(out)}, model=model, data=data)
    killed = launch(["train.py", "--cfg-path", str(cfg), "--import", "kill_switch"], check=False,
                    env={"LAVIS_TEST_KILL_AFTER_STEP": "9"})
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert (out / "checkpoints" / "step_9").is_dir() and not (out / "checkpoints" / "step_10").exists()
    proc = launch(["train.py", "--cfg-path", str(cfg), "--resume", "auto"])
    # 8 steps per epoch (and per pass for runner_iter): step 9 is one batch into epoch 1
    match = re.search(r"resumed from (\S+) at epoch (\d+), batch (\d+), step (\d+)", proc.stdout + proc.stderr)
    assert match, proc.stdout[-2000:]
    assert match.group(1).endswith("step_9") and match.group(2, 3, 4) == ("1", "1", "9")

    name_a, a = last_weights(tmp_path / "straight")
    name_b, b = last_weights(out)
    assert name_a == name_b
    for key in a:
        assert torch.equal(a[key], b[key]), key
    log = (out / "metrics.jsonl").read_text()
    assert '"type": "checkpoint"' in log
