"""Beam search with per-sample cross-attention keys/values (lavis/models/llm/beam_cache.py):
token-for-token transformers' own beam search, with the per-sample work done once, not per beam."""

from __future__ import annotations

import pytest
import torch

from lavis.models.llm.bridge import GenerationOptions


@pytest.fixture(scope="module")
def t5_model(build_tiny):
    return build_tiny("blip2_t5_instruct").eval()


@pytest.mark.parametrize("beams, returns, penalty", [(5, 1, -1.0), (3, 2, 1.0), (4, 1, 0.0)])
def test_same_tokens_as_plain_beam_search(t5_model, make_batch, beams, returns, penalty):
    model, bridge = t5_model, t5_model.bridge
    batch = make_batch(3)
    batch["text_input"] = ["no", "describe the image in detail please, with every finding", "what type of cells"]
    options = GenerationOptions(num_beams=beams, num_return_sequences=returns, max_new_tokens=12, min_new_tokens=2,
                                length_penalty=penalty)
    with torch.no_grad():
        prompts = model.prompts(batch)
        prefix = model.prefix(batch, prompts)
        embeds, mask = bridge._encoder_inputs(prefix, prompts)
        plain = bridge.model.generate(inputs_embeds=embeds, attention_mask=mask,
                                      generation_config=bridge.generation_config(options))
        shared = bridge.generate_ids(prefix, prompts, options)
    assert shared.shape[0] == 3 * returns
    assert torch.equal(shared, plain)


def test_encoder_and_cross_attention_projections_run_once_per_sample(t5_model, make_batch):
    model = t5_model
    batch = make_batch(3)
    rows: dict[str, list[int]] = {"encoder": [], "cross_k": []}
    hooks = [model.llm.get_encoder().register_forward_hook(
        lambda m, args, kwargs, out: rows["encoder"].append(kwargs["inputs_embeds"].shape[0]), with_kwargs=True)]
    for block in model.llm.decoder.block:
        hooks.append(block.layer[1].EncDecAttention.k.register_forward_hook(
            lambda m, args, out: rows["cross_k"].append(args[0].shape[0])))
    try:
        answers = model.generate(batch, num_beams=5, max_new_tokens=6, min_new_tokens=6)
    finally:
        for hook in hooks:
            hook.remove()
    assert len(answers) == 3
    assert rows["encoder"] == [3]  # one pass over the 3 samples, not 15 beams
    assert rows["cross_k"] == [3] * len(model.llm.decoder.block)  # once per layer, per sample
