"""``save_every_n_iters`` and the loop's own checkpoints (epoch / inner-epoch end) never write a step twice."""

from __future__ import annotations

import json

import pytest

from lavis.common import checkpoint as ckpt


@pytest.mark.parametrize(
    "runner, schedule, expected",
    [
        # 8 steps per epoch: the cadence (4) meets the epoch end at steps 8 and 16
        ("runner_epoch", {"max_epoch": 2}, [4, 8, 12, 16]),
        # inner epochs of 6 steps: the cadence (3) meets them at 6 and at the last step, 12
        ("runner_iter", {"max_iters": 12, "iters_per_inner_epoch": 6}, [3, 6, 9, 12]),
    ],
)
def test_each_step_is_checkpointed_once_when_cadences_coincide(toy_cfg, tmp_path, launch, runner, schedule, expected):
    every = expected[0]
    cfg = toy_cfg(
        {"runner": runner, **schedule, "batch_size_train": 8, "save_every_n_iters": every, "keep_last": 10,
         "log_freq": 100, "init_lr": 1e-2, "valid_splits": ["val"]}
    )
    launch(["train.py", "--cfg-path", str(cfg)])
    out = tmp_path / "out"
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    saved = [r["step"] for r in records if r["type"] == "checkpoint"]
    assert saved == expected
    # the surviving checkpoint at a shared step is the loop's: taken after validation, so it holds
    # the best so far and the position after the epoch / inner epoch
    summary = json.loads((out / "summary.json").read_text())
    state = ckpt.load_state(out / "checkpoints" / f"step_{expected[-1]}")
    assert state["global_step"] == expected[-1]
    assert state["best"] == summary["best"] is not None
    if runner == "runner_epoch":
        assert (state["epoch"], state["batches_done"]) == (2, 0)
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == sorted(
        ["best", "last", *(f"step_{s}" for s in expected)]
    )
