"""Boolean attention masks (``True`` = may attend) for the Q-Former, built without Python loops."""

from __future__ import annotations

import torch


def self_attention_mask(
    batch: int,
    query_length: int,
    text_length: int,
    text_mask: torch.Tensor | None,
    past_length: int,
    causal: bool,
    device: torch.device,
) -> torch.Tensor | None:
    """Mask of shape (B, 1, query_length + text_length, past_length + query_length + text_length).

    Keys are [cached prefix (all real); queries (all real); text (``text_mask``)].
    Bidirectional (``causal=False``): every position sees every real key; ``None`` when nothing
    is masked (known without a device sync only on CPU), so SDPA can take its fastest path.
    Causal (the ITG decoder, UniLM-style): a query sees only queries (cached or not); a text
    token sees every query and the text up to itself.
    """
    prefix = past_length + query_length
    keys = prefix + text_length
    key_valid = None
    # Checking for padding reads the mask on the host: free on CPU, a device sync on an accelerator
    # (where the masked SDPA kernel is as fast), so there the mask is simply always built.
    all_real = text_mask is not None and text_mask.device.type == "cpu" and bool(text_mask.all())
    if text_mask is not None and text_length and not all_real:
        ones = torch.ones(batch, prefix, dtype=torch.bool, device=device)
        key_valid = torch.cat([ones, text_mask.to(device=device, dtype=torch.bool)], dim=1)[:, None, None, :]
    if not causal:
        return key_valid
    key_pos = torch.arange(keys, device=device) - prefix  # < 0: a query (cached or current)
    row_pos = torch.arange(query_length + text_length, device=device) - query_length  # < 0: a query row
    visible = (key_pos[None, :] < 0) | ((row_pos[:, None] >= 0) & (key_pos[None, :] <= row_pos[:, None]))
    visible = visible[None, None].expand(batch, 1, -1, -1)
    return visible if key_valid is None else visible & key_valid


def image_attention_mask(image_mask: torch.Tensor | None) -> torch.Tensor | None:
    """(B, N) image-token mask -> (B, 1, 1, N); ``None`` (all tokens real) stays ``None``."""
    if image_mask is None:
        return None
    return image_mask.to(torch.bool)[:, None, None, :]
