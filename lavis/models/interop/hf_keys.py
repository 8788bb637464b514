"""Parameter names of Hugging Face ``Blip2ForConditionalGeneration`` /
``InstructBlipForConditionalGeneration`` and where each lands in our (LAVIS-named) models.

One map, HF -> ours, serves both directions: loading applies it key by key; exporting asks it
which of our tensors feeds each key of the HF model (see :mod:`lavis.models.interop.hf_export`).

- ``vision_model.*`` -> ``visual_encoder.*`` through :mod:`lavis.models.vision.eva_keys`;
  ``vision_model.post_layernorm`` is our ``ln_vision``; the fused ``qkv.bias`` holds
  ``cat(q_bias, 0, v_bias)`` and feeds two of our tensors.
- ``query_tokens`` -> ``query_tokens``; ``language_projection`` -> ``t5_proj`` / ``llm_proj``;
  ``language_model.*`` -> ``t5_model.*`` / ``llm_model.*`` (the same transformers classes inside).
- Q-Former: ``qformer.layernorm`` (BLIP-2) and ``qformer.embeddings.layernorm`` (InstructBLIP) ->
  ``Qformer.bert.embeddings.LayerNorm``; ``qformer.embeddings.{word,position}_embeddings`` (InstructBLIP
  only) -> ``Qformer.bert.embeddings.*``; ``...layer.N.{attention,crossattention}.attention.*`` ->
  ``...layer.N.{attention,crossattention}.self.*``; every other ``qformer.encoder.layer.N.*`` key
  (``output``, ``intermediate(_query)``, ``output_query``) keeps its name under ``Qformer.bert.``.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Iterator, Mapping

import torch

from lavis.models.vision.eva_keys import eva_state_from_hf

HF_VISION_PREFIX = "vision_model."
HF_LLM_PREFIX = "language_model."
_QFORMER_RULES = [
    (re.compile(r"^qformer\.(?:embeddings\.)?layernorm\."), "Qformer.bert.embeddings.LayerNorm."),
    (re.compile(r"^qformer\.embeddings\.(word|position)_embeddings\."), r"Qformer.bert.embeddings.\1_embeddings."),
    (
        re.compile(r"^qformer\.encoder\.layer\.(\d+)\.(attention|crossattention)\.attention\."),
        r"Qformer.bert.encoder.layer.\1.\2.self.",
    ),
    (re.compile(r"^qformer\.encoder\.layer\.(\d+)\."), r"Qformer.bert.encoder.layer.\1."),
]
# The three thirds of a fused HF vision ``qkv.bias``; the key third is always zero.
_QKV_BIAS_PARTS = 3


@dataclasses.dataclass(frozen=True)
class OurNames:
    """Where the LLM and the projection live in one of our stage-2 models."""

    llm: str  # "t5_model" | "llm_model"
    projection: str  # "t5_proj" | "llm_proj"

    @classmethod
    def of(cls, model: torch.nn.Module) -> OurNames:
        return cls(getattr(model, "LLM_ATTR", "llm_model"), getattr(model, "PROJ_ATTR", "llm_proj"))


def is_hf_layout(keys: Iterable[str]) -> bool:
    """Whether a state dict uses HF BLIP-2 names (``qformer.*`` / ``language_projection.*``)."""
    return any(key.startswith(("qformer.", "language_projection.")) for key in keys)


def our_keys_for(hf_key: str, names: OurNames) -> list[str]:
    """Our keys fed by the HF tensor ``hf_key``: one, two for a fused vision ``qkv.bias``
    (``q_bias``, ``v_bias``), none for a key we have no place for (reported as ignored)."""
    if hf_key.startswith(HF_VISION_PREFIX):
        # eva_keys holds the vision names; ask it with a placeholder that splits like a bias would.
        encoder, ln_vision = eva_state_from_hf({hf_key: torch.zeros(_QKV_BIAS_PARTS)})
        return [f"visual_encoder.{k}" for k in encoder] + [f"ln_vision.{k}" for k in ln_vision]
    if hf_key == "query_tokens":
        return ["query_tokens"]
    if hf_key.startswith("language_projection."):
        return [names.projection + hf_key.removeprefix("language_projection")]
    if hf_key.startswith(HF_LLM_PREFIX):
        return [f"{names.llm}.{hf_key.removeprefix(HF_LLM_PREFIX)}"]
    if hf_key.endswith(".position_ids"):
        return []  # a buffer older transformers saved; positions are computed here
    for pattern, target in _QFORMER_RULES:
        if pattern.match(hf_key):
            return [pattern.sub(target, hf_key)]
    return []


def split_hf_tensor(hf_key: str, value: torch.Tensor, targets: list[str]) -> list[torch.Tensor]:
    """The HF tensor's share for each of ``targets`` (the q and v thirds of a fused bias)."""
    if len(targets) == 1:
        return [value]
    if len(targets) == 2 and value.dim() == 1 and value.shape[0] % _QKV_BIAS_PARTS == 0:
        q_bias, _, v_bias = value.chunk(_QKV_BIAS_PARTS)
        return [q_bias, v_bias]
    raise ValueError(f"HF key '{hf_key}' {tuple(value.shape)} cannot feed {targets}")


def join_for_hf(parts: list[torch.Tensor]) -> torch.Tensor:
    """Inverse of :func:`split_hf_tensor`: HF's fused bias is cat(q_bias, 0, v_bias)."""
    if len(parts) == 1:
        return parts[0]
    q_bias, v_bias = parts
    return torch.cat([q_bias, torch.zeros_like(q_bias), v_bias])


def hf_to_ours(items: Iterable[tuple[str, torch.Tensor]], names: OurNames) -> Iterator[tuple[str, torch.Tensor]]:
    """Stream HF (key, tensor) pairs as ours; keys we have no place for pass through unchanged
    (so a loader reports them as ignored rather than silently dropping them)."""
    for hf_key, value in items:
        targets = our_keys_for(hf_key, names)
        if not targets:
            yield hf_key, value
            continue
        yield from zip(targets, split_hf_tensor(hf_key, value, targets))


def hf_state_to_ours(state: Mapping[str, torch.Tensor], names: OurNames) -> dict[str, torch.Tensor]:
    return dict(hf_to_ours(state.items(), names))
