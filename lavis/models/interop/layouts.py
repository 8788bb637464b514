"""Bring a checkpoint's state dict into our parameter names, whatever layout it was saved in.

- Ours and LAVIS (``blip2_pretrained.pth``, BLIP-2 T5/OPT, InstructBLIP T5/Vicuna, CLOVER) share
  the names: ``query_tokens``, ``Qformer.bert.*`` (word embeddings of 30,523 rows: BERT plus
  ``[DEC]``), ``Qformer.cls.*``, ``vision_proj``, ``text_proj``, ``itm_head``, ``temp``,
  ``ln_vision``, ``t5_proj`` / ``llm_proj``, ``visual_encoder.*``. What still needs mapping:

  - ``visual_encoder.*`` of EVA ViT-g goes through :func:`eva_state_from_lavis`: blocks past the
    model's depth (LAVIS's ``eva_vit_g.pth`` holds block 39, which BLIP-2 never runs) and the unused
    ``norm`` / ``fc_norm`` / ``head`` are left out (reported as ignored), and a position embedding
    trained at another image size is resized as LAVIS does (bicubic).
  - LAVIS ``blip2_opt``'s ``opt_proj`` / ``opt_model`` are our decoder-only ``llm_proj`` / ``llm_model``.
  - LAVIS checkpoints never hold the LLM (it comes from the hub), and trimmed ones (InstructBLIP)
    hold no encoder: the load report lists those as frozen tensors kept from their own source.

- A Hugging Face BLIP-2 / InstructBLIP state dict goes through :mod:`lavis.models.interop.hf_keys`.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from lavis.models.interop.hf_keys import OurNames, hf_state_to_ours, is_hf_layout
from lavis.models.vision.eva_vit import EvaVisionTransformer

VISION_PREFIX = "visual_encoder."
# LAVIS blip2_opt names -> our decoder-only names (only where the model has the latter).
_LAVIS_ALIASES = {"opt_proj.": "llm_proj.", "opt_model.": "llm_model."}


def to_our_layout(model: nn.Module, state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state`` (ours, LAVIS or HF layout) with our names; unmappable keys pass through unchanged."""
    if is_hf_layout(state):
        return hf_state_to_ours(state, OurNames.of(model))
    out = _rename_lavis_aliases(model, state)
    encoder = getattr(model, "visual_encoder", None)
    if isinstance(encoder, EvaVisionTransformer) and any(k.startswith(VISION_PREFIX) for k in out):
        out = _map_eva(encoder, out)
    return out


def _rename_lavis_aliases(model: nn.Module, state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    ours = {name.split(".")[0] for name, _ in model.named_parameters()}
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        for theirs, mine in _LAVIS_ALIASES.items():
            if key.startswith(theirs) and mine.rstrip(".") in ours:
                key = mine + key.removeprefix(theirs)
                break
        out[key] = value
    return out


def _map_eva(encoder: EvaVisionTransformer, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    vision = {k: v for k, v in state.items() if k.startswith(VISION_PREFIX)}
    mapped, _ = encoder.map_state(vision)  # ln_vision stays as it is
    kept = {VISION_PREFIX + k: v for k, v in mapped.items()}
    # Keys eva_keys leaves out (deep blocks, heads) stay under their names: reported as ignored.
    dropped = {k: v for k, v in vision.items() if k.removeprefix(VISION_PREFIX) not in mapped}
    rest = {k: v for k, v in state.items() if not k.startswith(VISION_PREFIX)}
    return {**rest, **kept, **dropped}
