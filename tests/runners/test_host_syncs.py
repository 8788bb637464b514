"""No host synchronisation inside a training step: the guard sees every read of a tensor on the
host that our code makes, and the runner's steady-state step makes none (the losses are read once
per log record)."""

from __future__ import annotations

import sys

import torch

from lavis.runners.sync_guard import count_host_syncs
from tests.runners.conftest import PLUGINS, toy_config


def test_the_guard_counts_host_reads_and_leaves_out_torchs_host_bookkeeping():
    t = torch.ones(())
    param = torch.nn.Parameter(torch.ones(2))
    optimizer = torch.optim.AdamW([param], foreach=False)  # reads its CPU step counter with .item()
    param.grad = torch.ones(2)
    with count_host_syncs("cpu") as syncs:
        t.item(), bool(t), float(t), t.tolist(), f"{t:.2f}", t.cpu(), t.numpy()
        optimizer.step()
    assert [s.split(" at ")[0] for s in syncs] == ["Tensor.item", "Tensor.__bool__", "Tensor.__float__", "Tensor.tolist",
                                                   "Tensor.__format__", "Tensor.cpu", "Tensor.numpy"]
    assert len({s.split(" at ")[1] for s in syncs}) == 1 and "test_host_syncs.py:" in syncs[0]  # where they were made
    assert not hasattr(torch.Tensor.__dict__.get("item"), "__wrapped__") and t.item() == 1.0  # restored


def test_a_steady_state_training_step_makes_no_host_sync(tmp_path):
    from lavis.runners import RUNNERS
    from lavis.runners.assemble import build_parts, load_run_config

    if str(PLUGINS) not in sys.path:
        sys.path.insert(0, str(PLUGINS))
    run = {"batch_size_train": 4, "accum_grad_iters": 2, "max_grad_norm": 1.0, "log_freq": 3, "save_every_n_iters": 100,
           "max_epoch": 2}
    cfg = load_run_config(str(toy_config(tmp_path, run, model={"dropout": 0.1})))
    task, model, datasets = build_parts(cfg)
    runner = RUNNERS.get("runner_epoch")(cfg, task, model, datasets)
    runner.build_train_loader()
    runner.setup_training(total_steps=100)
    per_epoch = runner.batches_per_epoch()
    batches = iter(runner.train_loader)
    for _ in range(2):  # warm up: first allocations, lazily built state
        runner.micro_step(next(batches), per_epoch)
    calls = []
    for _ in range(8):
        with count_host_syncs("cpu") as syncs:
            stepped = runner.micro_step(next(batches), per_epoch)
        calls.append((runner.global_step if stepped else None, syncs))
    # accumulation: an optimizer step every second micro-batch; the log record falls on step 3
    assert [step for step, _ in calls] == [None, 2, None, 3, None, 4, None, 5]
    assert all(syncs == [] for step, syncs in calls if step != 3)
    (read,) = calls[3][1]  # one read of every summed value at once
    assert read.startswith("Tensor.tolist at ") and "lavis/runners/train_step.py" in read
    logged = [line for line in (tmp_path / "out" / "metrics.jsonl").read_text().splitlines() if '"train"' in line]
    assert len(logged) == 1 and '"grad_norm"' in logged[0] and '"loss"' in logged[0]
