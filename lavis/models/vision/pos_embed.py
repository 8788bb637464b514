"""Resize a learned absolute position embedding to another patch grid (another image size)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from lavis.common.errors import CheckpointError


def resize_pos_embed(
    pos_embed: torch.Tensor,
    grid: tuple[int, int],
    num_prefix_tokens: int = 1,
    align_corners: bool = False,
    name: str = "pos_embed",
) -> torch.Tensor:
    """Bicubic resize of the patch part of ``(1, P + N, D)`` or ``(P + N, D)`` embeddings.

    The ``P`` prefix (class) entries are kept; the ``N`` patch entries must form a square grid.
    LAVIS resizes EVA with ``align_corners=False`` (as Hugging Face's ``interpolate_pos_encoding``)
    and its CLIP ViT-L with ``align_corners=True``; the caller picks the one its weights expect.
    """
    flat = pos_embed.dim() == 2
    pos = pos_embed.unsqueeze(0) if flat else pos_embed
    if pos.dim() != 3:
        raise CheckpointError(f"'{name}' must have 2 or 3 dimensions, got shape {tuple(pos_embed.shape)}")
    prefix, patches = pos[:, :num_prefix_tokens], pos[:, num_prefix_tokens:]
    side = math.isqrt(patches.shape[1])
    if side * side != patches.shape[1]:
        raise CheckpointError(
            f"'{name}' has {patches.shape[1]} patch positions (+{num_prefix_tokens} prefix), "
            "which is not a square grid"
        )
    if (side, side) == tuple(grid):
        return pos_embed
    dim = patches.shape[-1]
    patches = patches.reshape(1, side, side, dim).permute(0, 3, 1, 2).float()
    patches = F.interpolate(patches, size=tuple(grid), mode="bicubic", align_corners=align_corners)
    patches = patches.permute(0, 2, 3, 1).reshape(1, grid[0] * grid[1], dim).to(pos.dtype)
    resized = torch.cat([prefix, patches], dim=1)
    return resized[0] if flat else resized
