"""LAVIS-layout ``.pth`` checkpoints (and HF state dicts) through ``model.load_checkpoint``.

The files are written in LAVIS's layout from our tiny models (:func:`conftest.lavis_state`),
plus ``opt_proj`` for LAVIS's BLIP-2 OPT.
"""

from __future__ import annotations

import pytest
import torch

from lavis.models import from_hf, load_model_folder, save_model_folder
from lavis.models.interop.parity import our_lm_logits
from lavis.models.vision.pos_embed import resize_pos_embed

from .conftest import LLM_PREFIXES, lavis_state, save_lavis


def _outputs(model, batch):
    if hasattr(model, "llm"):
        return torch.cat([row.flatten() for row in our_lm_logits(model, batch)])
    return model.itm_score(batch["image"], batch["text_input"])


@pytest.mark.parametrize("arch", ["blip2", "blip2_t5", "blip2_t5_instruct", "blip2_vicuna_instruct"])
def test_lavis_pth_gives_identical_outputs(arch, build_tiny, make_batch, tmp_path):
    source = build_tiny(arch, seed=1).eval()
    path = save_lavis(tmp_path / "lavis.pth", lavis_state(source))
    target = build_tiny(arch, seed=2).eval()
    batch = make_batch(2)
    assert not torch.equal(_outputs(source, batch), _outputs(target, batch))
    report = target.load_checkpoint(path)
    assert not report.missing_trainable
    llm = sorted(k for k in target.state_dict() if k.startswith(LLM_PREFIXES))
    assert report.missing_frozen == llm  # expected: LAVIS checkpoints never hold the LLM
    assert {"visual_encoder.blocks.2.attn.qkv.weight", "visual_encoder.head.weight"} <= set(report.ignored)
    assert "visual_encoder.blocks.1.attn.qkv.weight" in report.loaded_frozen
    assert "kept from their own source" in report.summary()
    torch.testing.assert_close(_outputs(target, batch), _outputs(source, batch), rtol=0, atol=0)


def test_trimmed_checkpoint_keeps_the_encoder_and_resizes_position_embeddings(build_tiny, tmp_path):
    source = build_tiny("blip2_vicuna_instruct", seed=1)
    trimmed = build_tiny("blip2_vicuna_instruct", seed=2)
    encoder_before = trimmed.visual_encoder.pos_embed.clone()
    report = trimmed.load_checkpoint(save_lavis(tmp_path / "trimmed.pth", lavis_state(source, vision=False)))
    assert any(k.startswith("visual_encoder.") for k in report.missing_frozen)
    assert torch.equal(trimmed.visual_encoder.pos_embed, encoder_before)
    assert torch.equal(trimmed.ln_vision.weight, source.ln_vision.weight)
    # A checkpoint trained at 56 px into a model at 84 px: LAVIS's bicubic resize of pos_embed.
    larger = build_tiny("blip2_vicuna_instruct", seed=3, vision={"image_size": 84})
    larger.load_checkpoint(save_lavis(tmp_path / "full.pth", lavis_state(source)))
    expected = resize_pos_embed(source.visual_encoder.pos_embed.detach(), (6, 6), align_corners=False)
    torch.testing.assert_close(larger.visual_encoder.pos_embed, expected)
    assert torch.equal(larger.visual_encoder.blocks[1].mlp.fc2.weight, source.visual_encoder.blocks[1].mlp.fc2.weight)


def _perturb(model) -> None:
    with torch.no_grad():
        for _, param in model.trainable_named_parameters():
            param.add_(torch.randn_like(param))


def test_lavis_blip2_opt_names_load_into_blip2_llm(hf_checkpoint, tmp_path, samples):
    model, _, _ = from_hf(hf_checkpoint("blip2-llama"))
    folder = save_model_folder(model, tmp_path / "ours")
    state = {k.replace("llm_proj.", "opt_proj."): v for k, v in lavis_state(model).items()}
    path = save_lavis(tmp_path / "blip2_opt.pth", state)
    target = load_model_folder(folder)
    _perturb(target)
    report = target.load_checkpoint(path)
    assert "llm_proj.weight" in report.loaded_trainable and not any("opt_proj" in k for k in report.ignored)
    torch.testing.assert_close(our_lm_logits(target, samples), our_lm_logits(model, samples), rtol=0, atol=0)


@pytest.mark.parametrize(("variant", "file"), [("instructblip-t5", "model.safetensors"), ("blip2-llama", None)])
def test_hf_state_dict_through_load_checkpoint(variant, file, hf_checkpoint, samples):
    """An HF file, or a sharded HF folder read through its index, as a model's checkpoint."""
    folder = hf_checkpoint(variant)
    reference, _, _ = from_hf(folder)
    target, _, _ = from_hf(folder)
    _perturb(target)
    with torch.no_grad():
        target.ln_vision.weight.fill_(3.0)
    report = target.load_checkpoint(str(folder / file if file else folder))
    assert not report.missing_trainable and not report.missing_frozen
    torch.testing.assert_close(our_lm_logits(target, samples), our_lm_logits(reference, samples), rtol=0, atol=0)
