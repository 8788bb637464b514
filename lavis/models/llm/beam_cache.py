"""Beam search over an encoder-decoder LM without redoing per-sample work for every beam.

transformers' beam search copies each sample's encoder output once per beam, so every decoder
layer projects the same encoder states to cross-attention keys/values ``num_beams`` times, and
at every step it reorders that cross-attention cache along with the self-attention one. Beams
are only ever picked among the beams of the same sample, whose cross-attention keys/values are
identical, so that reorder is an identity. Here the keys/values are projected once per sample,
copied to the beams, and never reordered. The search itself (scores, lengths, stopping) is
transformers' own, so answers are the same (tests compare them token for token).
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from transformers.cache_utils import DynamicCache, EncoderDecoderCache


class BeamSharedCrossCache(EncoderDecoderCache):
    """An encoder-decoder cache whose cross-attention part is never reordered (see module doc)."""

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        self.self_attention_cache.reorder_cache(beam_idx)


def cache_argument(model: Any) -> str:
    """The keyword a model takes its cache by: ``cache`` (later transformers 5.x, where
    ``past_key_values`` is deprecated) or ``past_key_values`` (earlier ones)."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def _cross_attention_modules(model: Any) -> list[Any] | None:
    """Each decoder layer's cross-attention (T5 layout: ``decoder.block[i].layer[1].EncDecAttention``
    with ``k``/``v`` projections), or None for a layout this module does not know."""
    blocks = getattr(getattr(model, "decoder", None), "block", None)
    if blocks is None:
        return None
    modules = []
    for block in blocks:
        layers = getattr(block, "layer", [])
        attention = getattr(layers[1], "EncDecAttention", None) if len(layers) > 1 else None
        if attention is None or not all(hasattr(attention, a) for a in ("k", "v", "key_value_proj_dim")):
            return None
        modules.append(attention)
    return modules


@torch.no_grad()
def beam_shared_cache(model: Any, encoder_states: torch.Tensor, beams: int) -> BeamSharedCrossCache | None:
    """A cache with every layer's cross-attention keys/values projected once per sample and
    repeated for its ``beams`` beams; None when the model's layout is not recognised."""
    modules = _cross_attention_modules(model)
    if modules is None:
        return None
    batch, length = encoder_states.shape[:2]
    layers = []
    for attention in modules:
        shape = (batch, length, -1, attention.key_value_proj_dim)
        keys = attention.k(encoder_states).view(shape).transpose(1, 2)
        values = attention.v(encoder_states).view(shape).transpose(1, 2)
        layers.append((keys.repeat_interleave(beams, dim=0), values.repeat_interleave(beams, dim=0)))
    return BeamSharedCrossCache(DynamicCache(), DynamicCache(layers))
