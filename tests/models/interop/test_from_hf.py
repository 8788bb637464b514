"""from_hf: tiny HF BLIP-2 / InstructBLIP checkpoints (T5 and LLaMA) load into our models and
compute the same logits (fp32, atol 1e-4) and the same greedy generation as transformers."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from PIL import Image

from lavis.common.errors import CheckpointError, ConfigError, WeightsNotFoundError
from lavis.models import from_hf
from lavis.models.interop.hf_load import prompt_start_token
from lavis.models.interop.parity import (
    hf_generate,
    hf_inputs,
    hf_lm_logits,
    max_logit_difference,
    our_lm_logits,
)

from .conftest import ARCH, IMAGE_SIZE, NUM_QUERIES, VARIANTS


@pytest.fixture(params=VARIANTS)
def variant(request) -> str:
    return request.param


def test_same_logits_and_greedy_generation(variant, hf_checkpoint, load_hf, samples):
    folder = hf_checkpoint(variant)
    model, _, _ = from_hf(folder)
    hf = load_hf(folder)
    assert model.cfg.arch == ARCH[variant] and not model.training
    ours, theirs = our_lm_logits(model, samples), hf_lm_logits(hf, model, samples)
    assert max_logit_difference(ours, theirs) < 1e-4
    # The comparison can fail: another image moves the logits far more than the tolerance.
    other = dict(samples, image=samples["image"].flip(0))
    assert max_logit_difference(our_lm_logits(model, other), theirs) > 1e-2
    generation = {"num_beams": 1, "max_new_tokens": 8, "min_new_tokens": 2}
    expected = hf_generate(hf, model, samples, do_sample=False, **generation)
    assert model.generate(samples, **generation) == expected
    assert any(expected), expected  # something was generated, not just EOS


def test_processor_inputs_are_ours(variant, hf_checkpoint):
    """HF's processor builds the token ids our model reads (placeholders first), and our image
    processor normalises like the checkpoint's BlipImageProcessor."""
    from transformers import AutoConfig, AutoProcessor

    folder = hf_checkpoint(variant)
    model, vis_processors, txt_processors = from_hf(folder)
    processor = AutoProcessor.from_pretrained(folder)
    picture = Image.fromarray(torch.randint(0, 256, (IMAGE_SIZE, IMAGE_SIZE, 3), dtype=torch.uint8).numpy())
    prompt = txt_processors["eval"]("is there  necrosis\nin this image")
    encoded = processor(images=[picture], text=[prompt], return_tensors="pt")
    expected = hf_inputs(AutoConfig.from_pretrained(folder), model, vis_processors["eval"](picture), prompt)
    assert encoded["input_ids"].tolist() == expected["input_ids"].tolist()
    assert (encoded["input_ids"][0, :NUM_QUERIES] == processor.tokenizer.convert_tokens_to_ids("<image>")).all()
    if "qformer_input_ids" in expected:
        assert encoded["qformer_input_ids"].tolist() == expected["qformer_input_ids"].tolist()
    torch.testing.assert_close(encoded["pixel_values"][0], expected["pixel_values"][0], atol=1e-5, rtol=0)
    assert set(vis_processors) == {"train", "eval"} and vis_processors["train"](picture).shape == (3, IMAGE_SIZE, IMAGE_SIZE)


def test_prompt_start_follows_what_the_tokenizer_writes(hf_checkpoint):
    """Our BOS is the token HF's processor writes first, even where it is not ``bos_token``."""
    from transformers import AutoTokenizer

    vicuna_like = AutoTokenizer.from_pretrained(hf_checkpoint("instructblip-llama"))
    assert vicuna_like("a").input_ids[0] == vicuna_like.convert_tokens_to_ids("</s>") == vicuna_like.bos_token_id
    assert prompt_start_token(vicuna_like) is None  # the tokenizer's BOS, "</s>"
    renamed = AutoTokenizer.from_pretrained(hf_checkpoint("blip2-llama"), bos_token="</s>")  # template keeps <s>
    assert renamed.bos_token == "</s>" and prompt_start_token(renamed) == "<s>"
    model, _, _ = from_hf(hf_checkpoint("instructblip-llama"))
    assert model.bridge.bos_id == vicuna_like.convert_tokens_to_ids("</s>")


def test_dtype_applies_to_encoder_and_llm_only(hf_checkpoint):
    model, _, _ = from_hf(hf_checkpoint("instructblip-llama"), dtype="bf16")
    assert model.llm.dtype == torch.bfloat16
    assert next(model.visual_encoder.parameters()).dtype == torch.bfloat16
    assert model.query_tokens.dtype == model.llm_proj.weight.dtype == torch.float32
    assert next(model.Qformer.parameters()).dtype == torch.float32
    assert model.ln_vision.eps == 1e-6  # HF's post_layernorm eps, not LAVIS's 1e-5


def test_not_a_blip2_checkpoint(tmp_path, tiny_t5_dir):
    with pytest.raises(ConfigError, match="has no config.json"):
        from_hf(tmp_path)
    with pytest.raises(ConfigError, match=r"model_type is 't5'.*blip-2 / instructblip"):
        from_hf(tiny_t5_dir)


def test_incomplete_checkpoints_name_what_is_missing(hf_checkpoint, tmp_path):
    source = hf_checkpoint("blip2-llama")  # sharded: drop one shard's tensors from the index
    broken = tmp_path / "broken"
    shutil.copytree(source, broken)
    index_file = broken / "model.safetensors.index.json"
    index = json.loads(index_file.read_text())
    dropped = sorted(set(index["weight_map"].values()))[0]
    index["weight_map"] = {k: v for k, v in index["weight_map"].items() if v != dropped}
    index_file.write_text(json.dumps(index))
    (broken / dropped).unlink()
    with pytest.raises(CheckpointError, match=r"broken.*lacks \d+ tensors"):
        from_hf(broken)
    no_tokenizer = tmp_path / "no_tokenizer"
    shutil.copytree(hf_checkpoint("instructblip-t5"), no_tokenizer)
    shutil.rmtree(no_tokenizer / "qformer_tokenizer")
    with pytest.raises(WeightsNotFoundError, match="qformer_tokenizer"):
        from_hf(no_tokenizer)


def test_hub_id_offline_says_what_to_download(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsNotFoundError, match="hf download lavis-tests/no-such-blip2 --local-dir"):
        from_hf("lavis-tests/no-such-blip2")
    with pytest.raises(WeightsNotFoundError, match="not a hub id"):
        from_hf(str(tmp_path / "no" / "such" / "folder"))
