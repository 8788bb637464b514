"""SIGTERM, SIGUSR1 and Ctrl-C stop a training run after its current step with a checkpoint and
exit 75; a rerun with run.resume=auto continues, ending where an uninterrupted run ends."""

from __future__ import annotations

import json
import os
import re
import signal
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from lavis.runners.stop_signals import EXIT_INTERRUPTED, EXIT_STOPPED

RUN = {"max_epoch": 3, "batch_size_train": 8, "save_every_n_iters": 3, "keep_last": 10, "init_lr": 5e-3,
       "log_freq": 4}


def newest_step(out: Path) -> str:
    return max((p.name for p in (out / "checkpoints").glob("step_*")), key=lambda n: int(n.split("_")[1]))


def events(out: Path, kind: str) -> list[dict]:
    return [r for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()) if r["type"] == kind]


@pytest.mark.parametrize("signum, workers", [(signal.SIGTERM, 2), (signal.SIGUSR1, 0), (signal.SIGINT, 2)],
                         ids=["SIGTERM", "SIGUSR1", "SIGINT"])
def test_a_stop_signal_checkpoints_the_step_and_exits_75(toy_run, tmp_path, spawn, wait_for, signum, workers):
    out = tmp_path / "out"
    proc = spawn(["train.py", "--cfg-path", str(toy_run({**RUN, "num_workers": workers}, model={"sleep_s": 0.2}))])
    wait_for(out / "checkpoints" / "step_3", proc)
    # a terminal's Ctrl-C reaches the whole process group (the DataLoader workers too); SLURM signals every process
    os.killpg(proc.pid, signum)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == EXIT_STOPPED, stderr[-3000:]
    assert "Traceback" not in stderr
    step = newest_step(out)
    assert int(step.split("_")[1]) >= 3
    name = signal.Signals(signum).name
    assert stderr.strip().splitlines()[-1] == (
        f"stopped: {name}: stopped after {step.replace('_', ' ')}, checkpoint {out / 'checkpoints' / step}; "
        f"run again with run.resume=auto (or --resume auto) to continue (exit code {EXIT_STOPPED})"
    )
    assert (out / "checkpoints" / "last").resolve().name == step
    assert events(out, "stopped")[0]["signal"] == name


def test_a_requeued_run_continues_to_the_same_weights(toy_run, tmp_path, spawn, wait_for, entry):
    straight = toy_run({**RUN, "output_dir": str(tmp_path / "straight")}, model={"dropout": 0.2}, name="straight")
    assert entry(["train.py", "--cfg-path", str(straight)]).returncode == 0
    out = tmp_path / "out"
    proc = spawn(["train.py", "--cfg-path", str(toy_run(RUN, model={"dropout": 0.2, "sleep_s": 0.2}))])
    wait_for(out / "checkpoints" / "step_3", proc)
    os.killpg(proc.pid, signal.SIGTERM)
    proc.communicate(timeout=120)
    assert proc.returncode == EXIT_STOPPED
    stopped_at = newest_step(out)
    resumed = entry(["train.py", "--cfg-path", str(toy_run(RUN, model={"dropout": 0.2})), "--resume", "auto"])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resumed from {out / 'checkpoints' / stopped_at}" in resumed.stdout
    a = load_file(str(tmp_path / "straight" / "checkpoints" / "step_24" / "model.safetensors"))
    b = load_file(str(out / "checkpoints" / "step_24" / "model.safetensors"))
    assert all(torch.equal(a[key], b[key]) for key in a)


def test_a_second_ctrl_c_abandons_the_step_at_once(toy_run, tmp_path, spawn, wait_for):
    out = tmp_path / "out"
    proc = spawn(["train.py", "--cfg-path", str(toy_run({**RUN, "save_every_n_iters": 1}, model={"sleep_s": 4.0}))])
    wait_for(out / "checkpoints" / "step_1", proc, timeout=240)
    os.killpg(proc.pid, signal.SIGINT)
    time.sleep(3.5)  # later than a forwarded copy of the same Ctrl-C
    os.killpg(proc.pid, signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == EXIT_INTERRUPTED
    assert "Traceback" not in stderr
    assert stderr.strip().splitlines()[-1].startswith("interrupted: stopped at once, without a checkpoint")


def _rank_pids(launcher_pid: int) -> dict[int, int]:
    """{rank: pid} of the worker processes a torchrun launcher started."""
    ranks = {}
    for task in Path(f"/proc/{launcher_pid}/task").iterdir():
        for pid in (task / "children").read_text().split():
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            rank = next((int(v.split(b"=")[1]) for v in environ if v.startswith(b"RANK=")), None)
            if rank is not None:
                ranks[rank] = int(pid)
    return ranks


def test_one_ranks_signal_stops_every_rank_at_the_same_step(toy_run, tmp_path, spawn, wait_for, free_port):
    """SIGUSR1 reaches rank 1 only: the ranks agree (a reduction each step) and stop together."""
    out = tmp_path / "out"
    cfg = toy_run({**RUN, "batch_size_train": 4}, model={"sleep_s": 0.2})
    proc = spawn(["-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
                  f"--master_port={free_port()}", "train.py", "--cfg-path", str(cfg)])
    wait_for(out / "checkpoints" / "step_3", proc, timeout=240)
    os.kill(_rank_pids(proc.pid)[1], signal.SIGUSR1)
    _, stderr = proc.communicate(timeout=180)
    assert "stopped: SIGUSR1: stopped after step" in stderr
    # workers exit 75 (torchrun itself reports any nonzero worker code as a failure, exit 1). torchrun
    # lists the workers that had exited when it looked; once one has, it SIGTERMs the rest (-15), so a
    # slow machine may show a -15 for a rank that had already saved and was on its way out with 75
    codes = re.findall(r"exitcode\s*:\s*(-?\d+)", stderr)
    assert "75" in codes and set(codes) <= {"75", "-15"} and proc.returncode == 1, codes
    assert stderr.count("Traceback") == 1 and "ChildFailedError" in stderr  # torchrun's report only
    step = newest_step(out)
    assert events(out, "stopped")[0]["step"] == int(step.split("_")[1])
    state = torch.load(out / "checkpoints" / step / "state.pt", weights_only=True)
    assert state["world_size"] == 2 and len(state["rng"]) == 2  # both ranks' RNG states: a collective save
