"""to_hf: our models written as HF checkpoints load in transformers with nothing missing and
reproduce our logits and greedy generation; HF's processor builds the ids our model reads."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoConfig, AutoProcessor

from lavis.common.errors import ConfigError
from lavis.models import from_hf, to_hf
from lavis.models.interop.hf_config import portable_text_config
from lavis.models.interop.parity import (
    hf_generate,
    hf_inputs,
    hf_lm_logits,
    max_logit_difference,
    our_lm_logits,
)
from lavis.models.vision.presets import vision_preset

from .conftest import VARIANTS

GREEDY = {"num_beams": 1, "max_new_tokens": 8, "min_new_tokens": 2}


@pytest.mark.parametrize("variant", VARIANTS)
def test_round_trip_through_our_model(variant, hf_checkpoint, load_hf, samples, tmp_path):
    model, _, _ = from_hf(hf_checkpoint(variant))
    exported = load_hf(to_hf(model, tmp_path / "export"))
    assert max_logit_difference(our_lm_logits(model, samples), hf_lm_logits(exported, model, samples)) < 1e-4
    assert hf_generate(exported, model, samples, do_sample=False, **GREEDY) == model.generate(samples, **GREEDY)
    # Nothing grew: the source tokenizer already had <image>.
    assert exported.config.text_config.vocab_size == model.llm.get_input_embeddings().weight.shape[0]


@pytest.mark.parametrize(
    ("arch", "extra"),
    [
        # LAVIS's FlanT5 setting: exact GELU set on the live config must survive the export.
        ("blip2_t5", {"llm": {"config_overrides": {"dense_act_fn": "gelu"}}}),
        ("blip2_t5_instruct", {}),
        # InstructBLIP Vicuna's "</s>" BOS: the exported tokenizer must start prompts with it.
        ("blip2_vicuna_instruct", {"llm": {"bos_token": "</s>"}}),
    ],
)
def test_export_of_our_own_models(arch, extra, build_tiny, load_hf, samples, tmp_path):
    model = build_tiny(arch, seed=3, **extra).eval()
    folder = to_hf(model, tmp_path / arch)
    exported = load_hf(folder)
    rows = model.llm.get_input_embeddings().weight.shape[0]
    # The tiny LMs have no spare vocabulary row: <image> gets one, scored at the mean logit.
    assert exported.config.text_config.vocab_size == rows + 1 == exported.config.image_token_index + 1
    head = exported.get_output_embeddings().weight
    torch.testing.assert_close(head[-1], head[:-1].mean(dim=0))
    ours, theirs = our_lm_logits(model, samples), hf_lm_logits(exported, model, samples)
    # ln_vision keeps LAVIS's eps (1e-5) where HF uses the encoder's (1e-6): a deviation of
    # ~1e-5 here, far below the tolerance (and smaller at full size, where features are larger).
    assert max_logit_difference(ours, theirs) < 1e-4
    assert all((t[:, -1] < t[:, :-1].max(dim=-1).values).all() for t in theirs)  # never the greedy pick
    if arch == "blip2_vicuna_instruct":
        assert hf_generate(exported, model, samples, do_sample=False, **GREEDY) == model.generate(samples, **GREEDY)
    processor = AutoProcessor.from_pretrained(folder)
    encoded = processor(images=[_picture()], text=[samples["text_input"][0]], return_tensors="pt")
    expected = hf_inputs(AutoConfig.from_pretrained(folder), model, samples["image"][0], samples["text_input"][0])
    assert encoded["input_ids"].tolist() == expected["input_ids"].tolist()


def _picture():
    from PIL import Image

    return Image.new("RGB", (64, 48), (190, 120, 170))


def test_only_stage2_eva_models_export(build_tiny, tmp_path):
    with pytest.raises(ConfigError, match="stage-2 models"):
        to_hf(build_tiny("blip2"), tmp_path / "stage1")
    clip = build_tiny("blip2_t5_instruct", vision=vision_preset("clip_L_tiny"))
    with pytest.raises(ConfigError, match="'clip_L', which Hugging Face BLIP-2 cannot hold"):
        to_hf(clip, tmp_path / "clip")
    assert not (tmp_path / "clip").exists()


def test_a_config_that_changes_on_reload_is_refused(build_tiny, monkeypatch):
    """Older transformers re-derived T5's activation from feed_forward_proj on load; an export
    then computes something else, so it must fail instead of writing a different model."""
    model = build_tiny("blip2_t5", llm={"config_overrides": {"dense_act_fn": "gelu"}})
    config_cls = type(model.llm.config)
    original = config_cls.from_dict.__func__

    def rederive(cls, data, **kwargs):
        config = original(cls, data, **kwargs)
        config.dense_act_fn = "gelu_new"
        return config

    monkeypatch.setattr(config_cls, "from_dict", classmethod(rederive))
    with pytest.raises(ConfigError, match=r"dense_act_fn: 'gelu' -> 'gelu_new'"):
        portable_text_config(model.llm.config)


def test_export_tokenizer_is_a_fresh_copy(build_tiny):
    """The export adds <image> to its own tokenizer, never to the one the model reads."""
    from lavis.models.interop.hf_export import IMAGE_TOKEN, export_tokenizer

    model = build_tiny("blip2_vicuna_instruct", llm={"bos_token": "</s>"})
    ours = model.bridge.tokenizer
    before = len(ours)
    tokenizer = export_tokenizer(model)
    assert tokenizer is not ours and tokenizer is not export_tokenizer(model)
    assert IMAGE_TOKEN in tokenizer.get_vocab() and tokenizer.pad_token is not None
    assert len(ours) == before and IMAGE_TOKEN not in ours.get_vocab()
