"""Stage 1 (``blip2``) at tiny size: losses, training, frozen parts, feature cache, retrieval API,
and the two-process gather path."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap

import pytest
import torch

LOSS_KEYS = {"loss", "loss_itc", "loss_itm", "loss_lm"}
TRAINABLE_ROOTS = {"Qformer", "query_tokens", "vision_proj", "text_proj", "itm_head", "temp", "ln_vision"}


@pytest.fixture
def stage1(build_tiny):
    return build_tiny("blip2")


def test_forward_returns_the_three_losses(stage1, make_batch):
    out = stage1(make_batch(4))
    assert set(out) == LOSS_KEYS
    assert all(v.dim() == 0 and torch.isfinite(v) for v in out.values())
    torch.testing.assert_close(out["loss"], out["loss_itc"] + out["loss_itm"] + out["loss_lm"])


def test_batch_size_one_in_one_process(stage1, make_batch):
    """No negative exists: ITC is trivially 0, ITM keeps only the positive pair, nothing is NaN."""
    out = stage1(make_batch(1))
    assert all(torch.isfinite(v) for v in out.values())
    assert out["loss_itc"].abs().item() < 1e-6
    out["loss"].backward()
    assert stage1.itm_head.weight.grad is not None and torch.isfinite(stage1.itm_head.weight.grad).all()


def test_trainable_set_and_frozen_parts_stay_fixed(stage1, make_batch):
    trainable = {name.split(".")[0] for name, _ in stage1.trainable_named_parameters()}
    assert trainable == TRAINABLE_ROOTS  # ln_vision trains, as in LAVIS
    ln_before = stage1.ln_vision.weight.detach().clone()
    frozen = {n: p.detach().clone() for n, p in stage1.named_parameters() if not p.requires_grad}
    assert all(n.startswith("visual_encoder.") for n in frozen) and frozen
    stage1.train()
    assert not stage1.visual_encoder.training and stage1.Qformer.training
    optimizer = torch.optim.AdamW([p for p in stage1.parameters() if p.requires_grad], lr=1e-3, weight_decay=0.05)
    batch = make_batch(3)
    for _ in range(2):
        optimizer.zero_grad()
        stage1(batch)["loss"].backward()
        assert all(p.grad is None for p in stage1.parameters() if not p.requires_grad)
        optimizer.step()
    for name, param in stage1.named_parameters():
        if name in frozen:
            assert torch.equal(param, frozen[name]), name
    assert not torch.equal(stage1.ln_vision.weight, ln_before)  # it really learns


def test_ln_vision_can_be_frozen(build_tiny, make_batch):
    model = build_tiny("blip2", train_ln_vision=False)
    assert "ln_vision" not in {name.split(".")[0] for name, _ in model.trainable_named_parameters()}
    model(make_batch(2))["loss"].backward()
    assert model.ln_vision.weight.grad is None


def test_loss_falls_on_a_fixed_batch(stage1, make_batch):
    batch = make_batch(4)
    stage1.train()
    optimizer = torch.optim.AdamW([p for p in stage1.parameters() if p.requires_grad], lr=3e-3)
    history = []
    for step in range(20):
        torch.manual_seed(step)
        optimizer.zero_grad()
        out = stage1(batch)
        out["loss"].backward()
        optimizer.step()
        history.append({k: v.item() for k, v in out.items()})
    first, last = history[0], history[-1]
    assert last["loss"] < 0.8 * first["loss"] and last["loss_lm"] < 0.8 * first["loss_lm"], history


def test_image_embeds_path_gives_the_same_loss(stage1, make_batch):
    stage1.eval()
    batch = make_batch(3)
    cached = {k: v for k, v in batch.items() if k != "image"}
    cached["image_embeds"] = stage1.encode_image_frozen(batch["image"])  # before ln_vision
    assert cached["image_embeds"].dtype == torch.float32 and cached["image_embeds"].shape == (3, 17, 32)
    with torch.no_grad():
        stage1.ln_vision.bias.fill_(0.5)  # the cached path must apply the (trainable) ln_vision too
    torch.manual_seed(3)
    from_pixels = stage1(batch)
    torch.manual_seed(3)
    from_cache = stage1(cached)
    for key in LOSS_KEYS:
        torch.testing.assert_close(from_pixels[key], from_cache[key])


def test_same_image_ids_are_not_negatives(stage1, make_batch, monkeypatch):
    """Two captions of one image: each row's only other candidate is a positive -> no ITM negative."""
    import lavis.models.blip2.blip2_qformer as module

    seen = []
    original = module.sample_hard_negatives
    monkeypatch.setattr(module, "sample_hard_negatives", lambda sim, pos: seen.append(pos.clone()) or original(sim, pos))
    batch = make_batch(2)
    batch["image_id"] = torch.tensor([5, 5])
    out = stage1(batch)
    assert torch.isfinite(out["loss"])
    assert all(pos.all() for pos in seen) and len(seen) == 2


def test_features_and_scores(stage1, make_batch):
    stage1.eval()
    batch = make_batch(2)
    image = stage1.extract_features(batch, mode="image")
    assert image.image_embeds.shape == (2, 8, 64) and image.image_embeds_proj.shape == (2, 8, 32)
    torch.testing.assert_close(image.image_embeds_proj.norm(dim=-1), torch.ones(2, 8))
    text = stage1.extract_features(batch, mode="text")
    assert text.text_embeds_proj.shape[0] == 2 and text.image_embeds is None
    torch.testing.assert_close(text.text_embeds_proj[:, 0].norm(dim=-1), torch.ones(2))
    multimodal = stage1.extract_features(batch, mode="multimodal")
    assert multimodal.multimodal_embeds.shape == (2, 8, 64)
    scores = stage1.itm_score(batch["image"], batch["text_input"])
    assert scores.shape == (2,) and ((scores > 0) & (scores < 1)).all()
    embeds = stage1.encode_image_frozen(batch["image"])
    torch.testing.assert_close(stage1.itm_score(embeds, batch["text_input"]), scores)
    sims = stage1.itc_similarity(batch["image"], ["glands", "stroma", "nuclei"])
    assert sims.shape == (2, 3) and (sims.abs() <= 1 + 1e-5).all()
    with pytest.raises(ValueError, match="mode"):
        stage1.extract_features(batch, mode="video")


_WORKER = textwrap.dedent(
    """
    import json, os, sys, torch, torch.distributed as dist
    dist.init_process_group("gloo")
    from lavis.models import load_model
    torch.manual_seed(0)
    model = load_model("blip2", "tiny", qformer={"tokenizer": sys.argv[1]}).eval()
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(2, 3, 56, 56, generator=generator)
    texts = ["glands with nuclei", "stroma with fibrosis"]
    rank = dist.get_rank()
    if dist.get_world_size() == 1:
        out = model({"image": images, "text_input": texts})
    else:
        out = model({"image": images[rank : rank + 1], "text_input": texts[rank : rank + 1]})
    out["loss"].backward()
    print(json.dumps({k: v.item() for k, v in out.items()}))
    dist.destroy_process_group()
    """
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _run_world(script, world: int, vocab: str) -> list[dict]:
    port = _free_port()
    procs = []
    for rank in range(world):
        env = dict(os.environ, RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                   MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), OMP_NUM_THREADS="1")
        procs.append(subprocess.Popen([sys.executable, str(script), vocab], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    results = []
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=180)
        assert proc.returncode == 0, stderr[-3000:]
        results.append(json.loads(stdout.strip().splitlines()[-1]))
    return results


@pytest.mark.slow
def test_two_ranks_with_batch_one_match_one_process_with_batch_two(tmp_path, minilm_dir):
    """Gathered ITC/ITM over 2 ranks x 1 sample = one process x 2 samples (each row's only
    negative is the other sample, so ITM is deterministic here)."""
    script = tmp_path / "worker.py"
    script.write_text(_WORKER)
    single = _run_world(script, 1, str(minilm_dir))[0]
    ranks = _run_world(script, 2, str(minilm_dir))
    for key in ("loss_itc", "loss_itm"):
        mean = sum(r[key] for r in ranks) / 2
        assert abs(mean - single[key]) < 1e-4, (key, single, ranks)
    assert all(r["loss_itc"] > 0 for r in ranks)  # a real negative exists across ranks
