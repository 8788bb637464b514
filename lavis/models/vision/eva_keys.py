"""Key maps into our EVA ViT-g layout, which is the LAVIS ``eva_vit.py`` layout itself.

Our (= LAVIS) keys: ``cls_token (1,1,D)``, ``pos_embed (1,1+N,D)``, ``patch_embed.proj.{weight,bias}``,
``blocks.{i}.norm1.*``, ``blocks.{i}.attn.qkv.weight`` (no bias: ``q_bias`` and ``v_bias`` are
separate, keys have none), ``blocks.{i}.attn.proj.*``, ``blocks.{i}.norm2.*``,
``blocks.{i}.mlp.fc1.*``, ``blocks.{i}.mlp.fc2.*``.

- LAVIS ``eva_vit_g.pth`` holds the 40 EVA-CLIP blocks; BLIP-2 builds 39, so blocks ``>= depth``
  are dropped, as are the unused ``norm``/``fc_norm``/``head``. A full LAVIS BLIP-2 checkpoint
  works too (its ``visual_encoder.`` prefix is removed; its ``ln_vision`` is returned separately).
- Hugging Face ``Blip2VisionModel`` (prefix ``vision_model.`` inside ``Blip2*`` models):
  ``embeddings.class_embedding`` -> ``cls_token``, ``embeddings.patch_embedding`` ->
  ``patch_embed.proj``, ``embeddings.position_embedding`` -> ``pos_embed``,
  ``encoder.layers.{i}.layer_norm{1,2}`` -> ``blocks.{i}.norm{1,2}``, ``self_attn.qkv.weight`` ->
  ``attn.qkv.weight``, ``self_attn.qkv.bias`` = cat(q_bias, 0, v_bias) -> ``attn.q_bias`` and
  ``attn.v_bias``, ``self_attn.projection`` -> ``attn.proj``, ``mlp.fc{1,2}`` -> ``mlp.fc{1,2}``.
  ``post_layernorm`` is LAVIS's ``ln_vision`` (HF applies it inside the vision model, LAVIS right
  after it: the same LayerNorm in two places); it is returned separately for the caller.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch

from lavis.common.errors import CheckpointError
from lavis.models.vision.weights import select_prefix

LAVIS_PREFIXES = ("visual_encoder.",)
HF_PREFIXES = ("vision_model.",)
_LAVIS_UNUSED = ("norm.", "fc_norm.", "head.")
_BLOCK = re.compile(r"^blocks\.(\d+)\.")
_HF_RULES = [
    (re.compile(r"^embeddings\.class_embedding$"), "cls_token"),
    (re.compile(r"^embeddings\.position_embedding$"), "pos_embed"),
    (re.compile(r"^embeddings\.patch_embedding\.(weight|bias)$"), r"patch_embed.proj.\1"),
    (re.compile(r"^encoder\.layers\.(\d+)\.layer_norm([12])\.(weight|bias)$"), r"blocks.\1.norm\2.\3"),
    (re.compile(r"^encoder\.layers\.(\d+)\.self_attn\.qkv\.weight$"), r"blocks.\1.attn.qkv.weight"),
    (re.compile(r"^encoder\.layers\.(\d+)\.self_attn\.projection\.(weight|bias)$"), r"blocks.\1.attn.proj.\2"),
    (re.compile(r"^encoder\.layers\.(\d+)\.mlp\.fc([12])\.(weight|bias)$"), r"blocks.\1.mlp.fc\2.\3"),
]
_HF_QKV_BIAS = re.compile(r"^encoder\.layers\.(\d+)\.self_attn\.qkv\.bias$")
_HF_POST_NORM = re.compile(r"^post_layernorm\.(weight|bias)$")


def is_hf_layout(state: Mapping[str, torch.Tensor]) -> bool:
    return any(k.endswith("embeddings.patch_embedding.weight") for k in state)


def keep_eva_key(key: str) -> bool:
    """Whether a key of a full checkpoint can matter to the vision tower (reads only those shards)."""
    return not key.startswith(("Qformer.", "qformer.", "language_model.", "t5_model.", "llm_model.", "opt_model."))


def _drop_deep_blocks(state: dict[str, torch.Tensor], depth: int | None) -> dict[str, torch.Tensor]:
    if depth is None:
        return state
    return {k: v for k, v in state.items() if not ((m := _BLOCK.match(k)) and int(m.group(1)) >= depth)}


def eva_state_from_lavis(
    state: Mapping[str, torch.Tensor], depth: int | None = None
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """LAVIS ``eva_vit_g.pth`` / ``visual_encoder.*`` -> (our encoder state, ``ln_vision`` state).

    Deep blocks and the unused ``norm``/``fc_norm``/``head`` are dropped; ``ln_vision`` is only
    present in full BLIP-2 checkpoints (empty otherwise).
    """
    vision = select_prefix(state, LAVIS_PREFIXES)
    vision = {k: v for k, v in vision.items() if not k.startswith(_LAVIS_UNUSED)}
    ln_vision = {k.removeprefix("ln_vision."): v for k, v in state.items() if k.startswith("ln_vision.")}
    return _drop_deep_blocks(vision, depth), ln_vision


def eva_state_from_hf(
    state: Mapping[str, torch.Tensor], depth: int | None = None
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """HF ``Blip2VisionModel`` keys -> (our encoder state, ``ln_vision`` state from ``post_layernorm``).

    The key third of HF's fused ``qkv.bias`` is dropped: it is zero in every converted checkpoint
    and could not matter anyway (a bias on the keys adds the same amount to every score of a
    query, which softmax cancels).
    """
    vision = select_prefix(state, HF_PREFIXES)
    out: dict[str, torch.Tensor] = {}
    ln_vision: dict[str, torch.Tensor] = {}
    for key, value in vision.items():
        if m := _HF_QKV_BIAS.match(key):
            if value.shape[0] % 3:
                raise CheckpointError(f"HF key '{key}' has shape {tuple(value.shape)}; expected 3 x width")
            q_bias, _, v_bias = value.chunk(3)
            out[f"blocks.{m.group(1)}.attn.q_bias"] = q_bias
            out[f"blocks.{m.group(1)}.attn.v_bias"] = v_bias
        elif m := _HF_POST_NORM.match(key):
            ln_vision[m.group(1)] = value
        else:
            for pattern, target in _HF_RULES:
                if pattern.match(key):
                    out[pattern.sub(target, key)] = value
                    break
            else:
                out[key] = value  # unknown: left as is, so loading reports it
    return _drop_deep_blocks(out, depth), ln_vision
