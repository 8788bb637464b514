"""The runner through the real entry point: training, distribution, accumulation, bad data, errors."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def final_weights(out_dir):
    steps = sorted((out_dir / "checkpoints").glob("step_*"), key=lambda p: int(p.name.split("_")[1]))
    return load_file(str(steps[-1] / "model.safetensors"))


def test_single_process_run_writes_run_folder_and_learns(toy_cfg, tmp_path, launch):
    cfg = toy_cfg(
        {"max_epoch": 4, "batch_size_train": 8, "init_lr": 1e-2, "log_freq": 4, "valid_splits": ["val"],
         "test_splits": ["val"], "warmup_steps": 3, "keep_last": 2}
    )
    launch(["train.py", "--cfg-path", str(cfg)])
    out = tmp_path / "out"
    records = read_jsonl(out / "metrics.jsonl")
    train = [r for r in records if r["type"] == "train"]
    evals = [r for r in records if r["type"] == "eval"]
    assert train[-1]["loss"] < train[0]["loss"]
    assert len(evals) == 4 + 1  # one per epoch, then the test split with the best checkpoint
    assert evals[-1]["epoch"] == "best"
    assert (out / "config.yaml").read_text().count("toy_regression") >= 2
    info = json.loads((out / "run_info.json").read_text())
    assert info["trainable_params"] > 0 and info["frozen_params"] == 8 * 16 + 16
    # keep_last=2 regular checkpoints plus the best one; only trainable weights are stored
    steps = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert steps == ["best", "last", "step_24", "step_32"]
    assert (out / "checkpoints" / "last").resolve().name == "step_32"
    weights = final_weights(out)
    assert not any(k.startswith("frozen") for k in weights)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["global_step"] == 32 and summary["best"]["value"] == min(e["loss"] for e in evals[:-1])


def test_two_processes_match_one_process_with_the_same_global_batch(toy_cfg, tmp_path, launch):
    common = {"max_epoch": 2, "init_lr": 5e-3, "log_freq": 100, "weight_decay": 0.0}
    data = {"noise": 0.05}  # per-item augmentation must not depend on the rank that loads it
    one = toy_cfg({**common, "batch_size_train": 8, "output_dir": str(tmp_path / "one")}, data=data)
    launch(["train.py", "--cfg-path", str(one)])
    two = toy_cfg({**common, "batch_size_train": 4, "output_dir": str(tmp_path / "two")}, data=data)
    launch(["train.py", "--cfg-path", str(two)], nproc=2)
    a, b = final_weights(tmp_path / "one"), final_weights(tmp_path / "two")
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=1e-5, rtol=0)
    # and training changed the weights (the comparison is not vacuous)
    init = toy_cfg({**common, "max_epoch": 1, "init_lr": 0.0, "output_dir": str(tmp_path / "zero")})
    launch(["train.py", "--cfg-path", str(init)])
    assert (final_weights(tmp_path / "zero")["head.0.weight"] - a["head.0.weight"]).abs().max() > 1e-3


def test_gradient_accumulation_matches_a_larger_batch(toy_cfg, tmp_path, launch):
    common = {"max_epoch": 2, "init_lr": 5e-3, "log_freq": 100}
    big = toy_cfg({**common, "batch_size_train": 8, "output_dir": str(tmp_path / "big")})
    launch(["train.py", "--cfg-path", str(big)])
    acc = toy_cfg({**common, "batch_size_train": 4, "accum_grad_iters": 2, "output_dir": str(tmp_path / "acc")})
    launch(["train.py", "--cfg-path", str(acc)])
    a, b = final_weights(tmp_path / "big"), final_weights(tmp_path / "acc")
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=1e-6, rtol=0)


def test_bad_samples_are_counted_and_the_limit_stops_the_run(toy_cfg, tmp_path, launch):
    cfg = toy_cfg({"max_epoch": 1, "batch_size_train": 8, "max_bad_samples": 20}, data={"bad_every": 8})
    launch(["train.py", "--cfg-path", str(cfg)])
    data = [r for r in read_jsonl(tmp_path / "out" / "metrics.jsonl") if r["type"] == "data"]
    assert data[0]["skipped"] == 8  # items 0, 8, ..., 56 of 64
    assert len(data[0]["examples"]) == 5
    assert all(e.endswith(".png: unreadable on purpose") and int(e[4:-27]) % 8 == 0 for e in data[0]["examples"])

    strict = toy_cfg({"max_epoch": 1, "batch_size_train": 8, "max_bad_samples": 3, "output_dir": str(tmp_path / "strict")},
                     data={"bad_every": 8})
    proc = launch(["train.py", "--cfg-path", str(strict)], check=False)
    assert proc.returncode != 0
    assert "exceed run.max_bad_samples=3" in proc.stderr


def test_config_errors_exit_cleanly_naming_the_key(toy_cfg, launch):
    cfg = toy_cfg({"max_epoch": 1, "batch_size_tran": 8})
    proc = launch(["train.py", "--cfg-path", str(cfg)], check=False)
    assert proc.returncode == 2
    assert "unknown config key 'run.batch_size_tran'" in proc.stderr
    assert "Did you mean 'batch_size_train'?" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_print_config_merges_defaults_yaml_and_typed_options(toy_cfg, launch):
    cfg = toy_cfg({"max_epoch": 1})
    proc = launch(
        ["train.py", "--cfg-path", str(cfg), "--print-config",
         "--options", "run.max_epoch=3", "model.hidden=32", "run.lr_scales={head.: 0.5}"]
    )
    printed = proc.stdout
    assert "max_epoch: 3" in printed and "hidden: 32" in printed and "head.: 0.5" in printed
    assert not (cfg.parent / "out").exists()  # nothing was run


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_autocast_precisions_run_on_cpu(toy_cfg, tmp_path, precision, launch):
    cfg = toy_cfg({"max_epoch": 1, "batch_size_train": 16, "precision": precision, "max_grad_norm": 1.0})
    launch(["train.py", "--cfg-path", str(cfg)])
    assert torch.isfinite(final_weights(tmp_path / "out")["head.4.weight"]).all()
