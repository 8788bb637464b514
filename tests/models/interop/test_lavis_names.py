"""LAVIS / CLOVER loading without gaps: LAVIS's architecture names, ``checkpoint=None``, the
[PAD]-grown Vicuna of a full LAVIS state dict, LAVIS runner files (trainable tensors + separate
EVA weights) and CLOVER's GPT-2 ``blip2_biomed_instruct`` in its LAVIS key layout."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from lavis.common.errors import RegistryError
from lavis.models import MODELS, load_model, load_model_folder, model_config, save_model_folder
from lavis.models.interop.parity import our_lm_logits

from .conftest import LLM_PREFIXES, lavis_state, save_lavis

ENCODER = "visual_encoder."


def _logits(model, batch) -> torch.Tensor:
    return torch.cat([row.flatten() for row in our_lm_logits(model.eval(), batch)])


@pytest.mark.parametrize(("lavis_name", "ours", "model_type"), [
    ("blip2_feature_extractor", "blip2", "pretrain"),
    ("blip2_image_text_matching", "blip2", "pretrain"),
    ("blip2_opt", "blip2_llm", "pretrain_opt2.7b"),
    ("blip2_t5", "blip2_t5", "pretrain_flant5xl"),
    ("blip2_t5_instruct", "blip2_t5_instruct", "flant5xl"),
    ("blip2_vicuna_instruct", "blip2_vicuna_instruct", "vicuna7b"),
    ("blip2_biomed_instruct", "blip2_biomed_instruct", "biomed"),
])  # fmt: skip
def test_lavis_names_and_model_types_resolve(lavis_name, ours, model_type):
    assert MODELS.get(lavis_name) is MODELS.get(ours) and MODELS.canonical(lavis_name) == ours
    cfg = model_config(lavis_name, model_type)
    assert cfg.model_type == model_type and cfg.vision["name"] == "eva_clip_g" and cfg.qformer.num_query_tokens == 32


def test_unknown_names_suggest_the_lavis_alias():
    with pytest.raises(RegistryError, match=r"Did you mean 'blip2_opt'\?.*blip2_opt -> blip2_llm"):
        MODELS.get("blip2_op")


def test_checkpoint_none_loads_none_and_init_checkpoint_still_applies(build_tiny, tiny_overrides, tmp_path, monkeypatch):
    import yaml

    from lavis.common.paths import config_path

    source = build_tiny("blip2_t5_instruct", seed=1)
    init = tmp_path / "stage1.safetensors"
    save_file({k: v.contiguous() for k, v in source.trainable_state_dict().items()}, str(init))
    # A model_type whose YAML names a checkpoint (as every full-size one does): here a missing file.
    raw = yaml.safe_load(config_path("models/blip2_t5_instruct/tiny.yaml").read_text())
    raw["model"].update(model_type="with_checkpoint", checkpoint=str(tmp_path / "missing.safetensors"))
    (tmp_path / "with_checkpoint.yaml").write_text(yaml.safe_dump(raw))
    monkeypatch.setitem(MODELS.get("blip2_t5_instruct").MODEL_TYPES, "with_checkpoint", str(tmp_path / "with_checkpoint.yaml"))
    overrides = tiny_overrides("blip2_t5_instruct")
    with pytest.raises(Exception, match="missing.safetensors"):
        load_model("blip2_t5_instruct", "with_checkpoint", **overrides)
    model = load_model("blip2_t5_instruct", "with_checkpoint", checkpoint=None, init_checkpoint=str(init), **overrides)
    assert model.cfg.checkpoint is None and model.cfg.init_checkpoint == str(init)
    assert torch.equal(model.query_tokens, source.query_tokens)


def test_full_lavis_vicuna_state_dict_with_the_pad_row_loads_exactly(build_tiny, make_batch, tmp_path):
    source = build_tiny("blip2_vicuna_instruct", seed=1)
    rows = source.llm.get_input_embeddings().weight.shape[0]
    source.llm.resize_token_embeddings(rows + 1)  # what LAVIS does after adding [PAD] to the tokenizer
    with torch.no_grad():
        source.llm.get_output_embeddings().weight[-1].normal_()
    path = save_lavis(tmp_path / "full.pth", {k: v.clone() for k, v in source.state_dict().items()})
    target = build_tiny("blip2_vicuna_instruct", seed=2)
    report = target.load_checkpoint(path)
    assert not report.missing_trainable and not report.missing_frozen and not report.ignored
    assert target.llm.get_input_embeddings().weight.shape[0] == rows + 1
    assert not any(p.requires_grad for p in target.llm.parameters())
    batch = make_batch(2)
    torch.testing.assert_close(_logits(target, batch), _logits(source, batch), rtol=0, atol=0)
    assert len(target.generate(batch, num_beams=2, max_new_tokens=4)) == 2
    reloaded = load_model_folder(save_model_folder(target, tmp_path / "folder"))  # the grown rows travel along
    torch.testing.assert_close(_logits(reloaded, batch), _logits(source, batch), rtol=0, atol=0)
    other = build_tiny("blip2_vicuna_instruct", seed=3)
    with torch.no_grad():  # far more rows than added tokens: another LLM, refused by shape
        state = {**source.state_dict(), "llm_model.model.embed_tokens.weight": torch.zeros(rows + 50, 64)}
    with pytest.raises(Exception, match=r"has shape \(" + str(rows + 50)):
        other.load_checkpoint(save_lavis(tmp_path / "other.pth", state))


def _lavis_trainable(state: dict) -> dict:
    """What LAVIS's runner saves: every parameter that trains (the ViT and the LLM are frozen)."""
    return {k: v for k, v in state.items() if not k.startswith((ENCODER, *LLM_PREFIXES)) and "position_ids" not in k}


@pytest.mark.parametrize("arch", ["blip2_t5_instruct", "blip2_vicuna_instruct"])
def test_lavis_runner_files_with_separate_eva_weights(arch, build_tiny, make_batch, tmp_path):
    source = build_tiny(arch, seed=1)
    lavis = lavis_state(source)
    eva = tmp_path / "eva_vit_g.pth"  # LAVIS's encoder file: a bare state dict, 40th block and head included
    torch.save({k.removeprefix(ENCODER): v for k, v in lavis.items() if k.startswith(ENCODER)}, eva)
    runner = tmp_path / "checkpoint_4.pth"
    torch.save({"model": _lavis_trainable(lavis), "optimizer": {"state": {}}, "config": {}, "scaler": None,
                "epoch": 4}, runner)  # fmt: skip
    target = build_tiny(arch, seed=2, vision={"pretrained": str(eva)}, checkpoint=str(runner))
    batch = make_batch(2)
    torch.testing.assert_close(_logits(target, batch), _logits(source, batch), rtol=0, atol=0)
    report = build_tiny(arch, seed=2).load_checkpoint(str(runner))
    assert not report.missing_trainable and not report.ignored
    assert {k.split(".")[0] for k in report.missing_frozen} == {"visual_encoder", source.LLM_ATTR}


def test_clover_biomed_gpt2_in_its_lavis_key_layout(build_tiny, tiny_gpt2_dir, make_batch, tmp_path):
    from transformers import AutoConfig, GPT2LMHeadModel

    model = build_tiny("blip2_biomed_instruct", seed=1)
    vicuna = build_tiny("blip2_vicuna_instruct", seed=1)
    gpt2 = GPT2LMHeadModel(AutoConfig.from_pretrained(tiny_gpt2_dir))
    # CLOVER's module: the InstructBLIP Q-Former side (no Qformer.cls), llm_proj, GPT-2 as llm_model.
    expected = {k for k in vicuna.state_dict() if not k.startswith("llm_model.")}
    expected |= {f"llm_model.{k}" for k in gpt2.state_dict()}
    assert set(model.state_dict()) == expected
    assert model.llm_proj.weight.shape == (gpt2.config.n_embd, model.cfg.qformer.hidden_size)
    full = save_lavis(tmp_path / "clover_biomed.pth", lavis_state(model) | {
        k: v for k, v in model.state_dict().items() if k.startswith("llm_model.")})
    target = build_tiny("blip2_biomed_instruct", seed=2)
    report = target.load_checkpoint(full)
    assert not report.missing_trainable and not report.missing_frozen
    batch = make_batch(2)
    torch.testing.assert_close(_logits(target, batch), _logits(model, batch), rtol=0, atol=0)
    loss = target.train()(batch)["loss"]
    loss.backward()
    assert torch.isfinite(loss) and target.llm_proj.weight.grad is not None
    assert not any(p.grad is not None for p in target.llm.parameters())
    assert len(target.eval().generate(batch, num_beams=2, max_new_tokens=4)) == 2
