"""Check that one of our models and a Hugging Face BLIP-2 / InstructBLIP model compute the same thing.

Ours runs as it trains: ``model(samples)`` (teacher forcing), with the LLM's logits read by a
forward hook, so the check covers our real input assembly, padding and packing. HF runs one
sample at a time (no padding at all) on the same token ids, laid out the way its processor
does: ``<image>`` placeholders (replaced by the query outputs), then BOS + prompt + answer + EOS
(decoder-only) or prompt + EOS with the answer as decoder labels (T5). Used by the tests and by
``python -m lavis.models.convert --verify``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from lavis.models.blip2.stage2 import Blip2LLMBase


@torch.no_grad()
def our_lm_logits(model: Blip2LLMBase, samples: Mapping[str, Any]) -> list[torch.Tensor]:
    """Per sample, the LLM logits at its real positions while ``model(samples)`` runs.

    Decoder-only: [queries; BOS + prompt; answer + EOS]. T5: the decoder positions of answer + EOS.
    """
    captured: dict[str, Any] = {}

    def hook(module, args, kwargs, output) -> None:
        captured["logits"], captured["kwargs"] = output.logits, kwargs

    handle = model.llm.register_forward_hook(hook, with_kwargs=True)
    try:
        model(dict(samples))
    finally:
        handle.remove()
    mask_key = "attention_mask" if model.LLM_KIND == "causal" else "decoder_attention_mask"
    mask = captured["kwargs"][mask_key].bool()
    return [row[keep].float() for row, keep in zip(captured["logits"], mask)]


def _ids(tokenizer, text: str, special: bool) -> list[int]:
    return tokenizer(text, add_special_tokens=special).input_ids


def hf_inputs(
    hf_config: Any, model: Blip2LLMBase, image: torch.Tensor, prompt: str, dtype: torch.dtype = torch.float32
) -> dict[str, torch.Tensor]:
    """The inputs of the HF model with ``hf_config`` for one image and prompt, laid out as its
    processor does, with the token ids our ``model`` reads."""
    tokenizer = model.bridge.tokenizer
    placeholders = [hf_config.image_token_index] * hf_config.num_query_tokens
    if model.LLM_KIND == "causal":
        text = [model.bridge.bos_id] if model.bridge.bos_id is not None else []
        text += _ids(tokenizer, prompt, special=False)
    else:
        text = _ids(tokenizer, prompt, special=True)  # prompt + EOS
    inputs = {"pixel_values": image[None].to(dtype), "input_ids": torch.tensor([placeholders + text])}
    if model.QFORMER_TEXT:
        inputs["qformer_input_ids"] = torch.tensor([_ids(model.tokenizer, prompt, special=True)])
    return inputs


@torch.no_grad()
def hf_lm_logits(hf_model: Any, model: Blip2LLMBase, samples: Mapping[str, Any]) -> list[torch.Tensor]:
    """Per sample, the HF model's logits over the same positions :func:`our_lm_logits` returns."""
    tokenizer = model.bridge.tokenizer
    out = []
    for image, prompt, answer in zip(samples["image"], model.prompts(samples), samples["text_output"]):
        inputs = hf_inputs(hf_model.config, model, image, prompt, hf_model.dtype)
        target = _ids(tokenizer, answer, special=False) + [tokenizer.eos_token_id]
        if model.LLM_KIND == "causal":
            inputs["input_ids"] = torch.cat([inputs["input_ids"], torch.tensor([target])], dim=1)
        else:
            inputs["labels"] = torch.tensor([target])
        out.append(hf_model(**inputs).logits[0].float())
    return out


@torch.no_grad()
def hf_generate(hf_model: Any, model: Blip2LLMBase, samples: Mapping[str, Any], **generation: Any) -> list[str]:
    """HF's generation for each sample (one at a time), decoded like ours."""
    tokenizer = model.bridge.tokenizer
    texts = []
    for image, prompt in zip(samples["image"], model.prompts(samples)):
        inputs = hf_inputs(hf_model.config, model, image, prompt, hf_model.dtype)
        ids = hf_model.generate(
            **inputs, pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, **generation
        )
        if model.LLM_KIND == "causal":  # decoder-only generate returns the prompt too
            ids = ids[:, inputs["input_ids"].shape[1] :]
        texts.extend(model.bridge.decode(ids))
    return texts


def max_logit_difference(ours: Sequence[torch.Tensor], theirs: Sequence[torch.Tensor]) -> float:
    """Largest absolute difference over every position and vocabulary entry both models have
    (an HF export may add an ``<image>`` row to the vocabulary, scored after ours)."""
    if len(ours) != len(theirs):
        raise ValueError(f"{len(ours)} samples against {len(theirs)}")
    worst = 0.0
    for a, b in zip(ours, theirs):
        if a.shape[0] != b.shape[0]:
            raise ValueError(f"{a.shape[0]} positions against {b.shape[0]}: the two models read different inputs")
        vocab = min(a.shape[-1], b.shape[-1])
        worst = max(worst, (a[:, :vocab] - b[:, :vocab]).abs().max().item())
    return worst
