"""The runner with the real model, not a toy: a tiny BLIP-2 stage 1 (ITC + ITM + ITG, ``ln_vision``
training) and a tiny InstructBLIP-T5 stage 2 (through the feature cache), run by the real entry
points on files in the real layouts. Two processes give the weights of one process with the same
world batch; a run killed with SIGKILL mid-epoch and resumed gives the weights of a run never
interrupted, bit for bit."""

from __future__ import annotations

import json
import re

import torch
from safetensors.torch import load_file

NO_DROPOUT = {"qformer": {"hidden_dropout": 0.0, "attention_dropout": 0.0}}  # ranks draw their own masks


def last_checkpoint(out_dir) -> tuple[str, dict[str, torch.Tensor]]:
    steps = sorted((out_dir / "checkpoints").glob("step_*"), key=lambda p: int(p.name.split("_")[1]))
    return steps[-1].name, load_file(str(steps[-1] / "model.safetensors"))


def assert_same_weights(a: dict, b: dict, atol: float = 0.0) -> None:
    assert a.keys() == b.keys()
    for key in a:
        if atol:
            torch.testing.assert_close(a[key], b[key], atol=atol, rtol=0, msg=key)
        else:
            assert torch.equal(a[key], b[key]), key


def test_stage1_two_processes_with_batch_one_match_one_process(blip2_cfg, tmp_path, launch):
    """Per-rank batch 1: ITC and ITM read the other rank's sample through the gathers (each row's
    only negative), and the gradients that flow back through them reach ``ln_vision``."""
    one = blip2_cfg("stage1", "one", run={"batch_size_train": 2}, model=NO_DROPOUT)
    two = blip2_cfg("stage1", "two", run={"batch_size_train": 1}, model=NO_DROPOUT)
    launch(["train_blip2qformer.py", "--cfg-path", str(one)])
    launch(["train_blip2qformer.py", "--cfg-path", str(two)], nproc=2)
    name_a, a = last_checkpoint(tmp_path / "one")
    name_b, b = last_checkpoint(tmp_path / "two")
    assert name_a == name_b == "step_8"  # 8 captions, world batch 2, 2 epochs
    assert {"ln_vision.weight", "vision_proj.weight", "itm_head.weight", "temp"} <= a.keys()
    assert not any(key.startswith("visual_encoder.") for key in a)  # frozen: not in checkpoints
    assert_same_weights(a, b, atol=2e-5)
    assert (a["ln_vision.weight"] - 1).abs().max() > 1e-3  # it trained away from its initial ones


def test_stage2_two_processes_match_one_process_through_the_feature_cache(blip2_cfg, tmp_path, launch, tiny_t5_dir):
    from transformers import AutoTokenizer

    one = blip2_cfg("stage2", "one", run={"batch_size_train": 4, "feature_cache_dir": str(tmp_path / "cache_one")},
                    model=NO_DROPOUT)
    answers = {json.loads(line)["answer"] for line in (tmp_path / "data" / "instructions.jsonl").open()}
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_t5_dir))
    assert len({len(tokenizer(answer).input_ids) for answer in answers}) == 1  # equal answer tokens per rank
    two = blip2_cfg("stage2", "two", run={"batch_size_train": 2, "feature_cache_dir": str(tmp_path / "cache_two")},
                    model=NO_DROPOUT)
    launch(["train.py", "--cfg-path", str(one)])
    launch(["train.py", "--cfg-path", str(two)], nproc=2)
    for cache, writers in (("cache_one", ["r0"]), ("cache_two", ["r0", "r1"])):  # the train split came from the cache
        (store,) = [p for p in (tmp_path / cache).iterdir() if p.is_dir()]
        index = json.loads((store / "index.json").read_text())
        assert len(index["images"]) == 8 and sorted(s["file"][-6:-4] for s in index["segments"]) == writers
    name_a, a = last_checkpoint(tmp_path / "one")
    name_b, b = last_checkpoint(tmp_path / "two")
    assert name_a == name_b == "step_4"
    assert {"ln_vision.weight", "t5_proj.weight", "query_tokens"} <= a.keys()
    assert_same_weights(a, b, atol=2e-5)
    assert (a["ln_vision.bias"]).abs().max() > 1e-4  # ln_vision trained on cached (pre-ln_vision) features


def _kill_and_resume(launch, entry: str, cfg, out, kill_after: int) -> re.Match:
    killed = launch([entry, "--cfg-path", str(cfg), "--import", "kill_switch"], check=False,
                    env={"LAVIS_TEST_KILL_AFTER_STEP": str(kill_after)})
    assert killed.returncode == -9, killed.stderr[-2000:]  # SIGKILL, not a clean exit
    assert (out / "checkpoints" / f"step_{kill_after}").is_dir()
    assert not (out / "checkpoints" / f"step_{kill_after + 1}").exists()
    resumed = launch([entry, "--cfg-path", str(cfg), "--resume", "auto"])
    match = re.search(r"resumed from (\S+) at epoch (\d+), batch (\d+), step (\d+)", resumed.stdout + resumed.stderr)
    assert match, resumed.stderr[-2000:]
    return match


def test_stage1_sigkill_mid_epoch_then_resume_is_bit_identical(blip2_cfg, tmp_path, launch):
    """Dropout and ITM's hard-negative sampling draw from the RNG, the train transform is random
    and two loader workers prefetch: all of it must continue exactly."""
    run = {"max_epoch": 3, "save_every_n_iters": 3, "keep_last": 10, "num_workers": 2}
    launch(["train_blip2qformer.py", "--cfg-path", str(blip2_cfg("stage1", "straight", run=run))])
    cfg = blip2_cfg("stage1", "killed", run=run)
    match = _kill_and_resume(launch, "train_blip2qformer.py", cfg, tmp_path / "killed", kill_after=6)
    # 4 steps per epoch: step 6 is batch 2 of epoch 1
    assert match.group(1).endswith("step_6") and match.group(2, 3, 4) == ("1", "2", "6")
    name_a, a = last_checkpoint(tmp_path / "straight")
    name_b, b = last_checkpoint(tmp_path / "killed")
    assert name_a == name_b == "step_12"
    assert_same_weights(a, b)


def test_stage2_sigkill_then_resume_with_the_iteration_runner_is_bit_identical(blip2_cfg, tmp_path, launch):
    run = {"runner": "runner_iter", "max_iters": 10, "iters_per_inner_epoch": 4, "save_every_n_iters": 3,
           "keep_last": 10}
    launch(["train.py", "--cfg-path", str(blip2_cfg("stage2", "straight", run=run))])
    cfg = blip2_cfg("stage2", "killed", run=run)
    match = _kill_and_resume(launch, "train.py", cfg, tmp_path / "killed", kill_after=6)
    # 4 batches per pass over the 8 instructions: step 6 is batch 2 of the second pass
    assert match.group(1).endswith("step_6") and match.group(2, 3, 4) == ("1", "2", "6")
    name_a, a = last_checkpoint(tmp_path / "straight")
    name_b, b = last_checkpoint(tmp_path / "killed")
    assert name_a == name_b == "step_10"
    assert_same_weights(a, b)
