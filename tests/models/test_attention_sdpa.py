"""Fused attention (SDPA) in the ViTs and the Q-Former equals the textbook computation,
softmax(q k^T / sqrt(d) + mask) v, on every path the models use: padded and causal
self-attention, attention over a key/value prefix (ITG), and cross-attention to the image."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from lavis.models.qformer.attention import MultiHeadAttention
from lavis.models.qformer.masks import image_attention_mask, self_attention_mask

TOLERANCE = 1e-5  # fp32: SDPA's math and fused CPU kernels differ from the reference only in rounding


def reference(attn: MultiHeadAttention, hidden: torch.Tensor, mask: torch.Tensor | None,
              context: torch.Tensor | None = None, past: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    def split(x: torch.Tensor) -> torch.Tensor:
        return x.view(x.shape[0], x.shape[1], attn.heads, attn.head_dim).transpose(1, 2)

    source = hidden if context is None else context
    key, value = split(attn.key(source)), split(attn.value(source))
    if past is not None:
        key, value = torch.cat([past[0], key], dim=2), torch.cat([past[1], value], dim=2)
    scores = split(attn.query(hidden)) @ key.transpose(-1, -2) / math.sqrt(attn.head_dim)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    out = scores.softmax(dim=-1) @ value
    return out.transpose(1, 2).reshape(hidden.shape[0], hidden.shape[1], -1)


def make_encoder(preset: str, **overrides):
    import lavis.models.vision  # noqa: F401  (registers the encoders)
    from lavis.models.vision.base import VISION_ENCODERS
    from lavis.models.vision.presets import vision_preset

    cfg = vision_preset(preset, **overrides)
    cls = VISION_ENCODERS.get(cfg["name"])
    return cls.from_config(cls.parse_config(cfg))


@pytest.fixture
def text_mask() -> torch.Tensor:
    return torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 0, 0, 0, 0]])


@pytest.mark.parametrize("causal", [False, True])
def test_qformer_self_attention_with_padding_equals_reference(text_mask, causal):
    torch.manual_seed(0)
    attn = MultiHeadAttention(32, 4, 32, dropout=0.0)
    queries, batch, length = 6, 3, text_mask.shape[1]
    hidden = torch.randn(batch, queries + length, 32, requires_grad=True)
    mask = self_attention_mask(batch, queries, length, text_mask, 0, causal, torch.device("cpu"))
    assert mask is not None  # two rows are padded: the mask must be built
    ours, _ = attn(hidden, mask)
    expected = reference(attn, hidden, mask)
    assert torch.allclose(ours, expected, atol=TOLERANCE)
    (grad_ours,) = torch.autograd.grad(ours.square().sum(), hidden)
    (grad_ref,) = torch.autograd.grad(expected.square().sum(), hidden)
    assert torch.allclose(grad_ours, grad_ref, atol=TOLERANCE)


def test_qformer_itg_attention_over_the_query_prefix_equals_reference(text_mask):
    torch.manual_seed(1)
    attn = MultiHeadAttention(32, 4, 32, dropout=0.0)
    batch, queries, length = 3, 6, text_mask.shape[1]
    past = (torch.randn(batch, 4, queries, 8), torch.randn(batch, 4, queries, 8))  # the queries' cached k/v
    hidden = torch.randn(batch, length, 32)
    mask = self_attention_mask(batch, 0, length, text_mask, queries, True, torch.device("cpu"))
    ours, (key, _) = attn(hidden, mask, past=past)
    assert key.shape[2] == queries + length
    assert torch.allclose(ours, reference(attn, hidden, mask, past=past), atol=TOLERANCE)


@pytest.mark.parametrize("masked", [False, True])
def test_qformer_cross_attention_to_the_image_equals_reference(masked):
    torch.manual_seed(2)
    attn = MultiHeadAttention(32, 4, kv_width=48, dropout=0.0)
    queries, image = torch.randn(2, 6, 32), torch.randn(2, 17, 48)
    image_mask = torch.ones(2, 17, dtype=torch.long)
    image_mask[1, 9:] = 0
    mask = image_attention_mask(image_mask if masked else None)
    ours, _ = attn(queries, mask, context=image)
    assert torch.allclose(ours, reference(attn, queries, mask, context=image), atol=TOLERANCE)


def test_eva_blocks_use_sdpa_even_when_timm_is_switched_off(monkeypatch):
    from timm.layers import set_fused_attn

    set_fused_attn(False)  # what TIMM_FUSED_ATTN=0 does process-wide
    try:
        encoder = make_encoder("eva_clip_g_tiny", freeze=False)
    finally:
        set_fused_attn(True)
    assert all(block.attn.fused_attn for block in encoder.blocks)
    calls = []
    sdpa = F.scaled_dot_product_attention
    monkeypatch.setattr(F, "scaled_dot_product_attention", lambda *a, **k: calls.append(1) or sdpa(*a, **k))
    images = torch.randn(2, 3, 56, 56)
    fused = encoder(images)
    assert len(calls) == len(encoder.blocks)
    for block in encoder.blocks:
        block.attn.fused_attn = False  # timm's explicit softmax(q k^T * scale) v
    assert torch.allclose(fused, encoder(images), atol=TOLERANCE)


def test_clip_blocks_attend_through_sdpa_and_match_the_fast_inference_path(monkeypatch):
    encoder = make_encoder("clip_L_tiny", freeze=False).train()
    calls = []
    sdpa = F.scaled_dot_product_attention
    monkeypatch.setattr(F, "scaled_dot_product_attention", lambda *a, **k: calls.append(1) or sdpa(*a, **k))
    images = torch.randn(2, 3, 56, 56)
    trained = encoder(images)
    assert len(calls) == 2  # one fused call per block (depth 2)
    with torch.no_grad():
        inference = encoder.eval()(images)  # torch's native fused multi-head attention
    assert torch.allclose(trained, inference, atol=TOLERANCE)
