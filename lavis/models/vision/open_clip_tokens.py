"""Patch tokens from an open_clip ``VisionTransformer``, cut after a chosen block, before ``ln_post``.

The encoder adopts the tower's parts under their own names (``conv1``, ``class_embedding``,
``positional_embedding``, ``ln_pre``, ``transformer.resblocks.{i}.*``): that is the OpenAI CLIP
layout, which LAVIS's ``clip_vit.py`` uses too, so OpenAI/open_clip (``visual.*``) and LAVIS
(``visual_encoder.*``, ``clip_vit_L.pth``) weights load with prefixes stripped and nothing
renamed. Blocks past the cut, ``ln_post`` and ``proj`` are not kept (no unused parameters, which
would also trip DDP when the encoder trains).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from lavis.common.errors import ConfigError
from lavis.models.vision.common import TokenEncoder
from lavis.models.vision.pos_embed import resize_pos_embed
from lavis.models.vision.weights import load_into, select_prefix

OPEN_CLIP_PREFIXES = ("visual_encoder.", "visual.")
_TOWER_PARTS = ("conv1", "class_embedding", "positional_embedding", "ln_pre", "transformer")


class OpenClipTokenEncoder(TokenEncoder):
    """CLS + patch tokens of a truncated open_clip ViT tower."""

    # How pos embeddings are resized for another image size (LAVIS's CLIP uses True, open_clip False).
    resize_align_corners = False

    def adopt_tower(self, visual: nn.Module, num_blocks: int) -> None:
        """Take the parts of ``visual`` up to block ``num_blocks``; the rest is dropped."""
        missing = [name for name in _TOWER_PARTS if not hasattr(visual, name)]
        if missing or not hasattr(visual.transformer, "resblocks"):
            raise ConfigError(
                f"{type(visual).__name__} is not an open_clip ViT tower (missing {missing or ['resblocks']}); "
                "only ViT image towers give patch tokens here"
            )
        for name in _TOWER_PARTS:
            setattr(self, name, getattr(visual, name))
        self.transformer.resblocks = self.transformer.resblocks[:num_blocks]
        self.transformer.layers = num_blocks
        # open_clip >= 2.21 runs blocks batch-first; older releases (and OpenAI's CLIP) sequence-first.
        self.batch_first = bool(getattr(self.transformer, "batch_first", False))
        width, grid = self.class_embedding.shape[-1], self.conv1.kernel_size
        side = self.image_size // grid[0]
        self.grid_size = (side, side)
        self.num_features = width
        self.num_tokens = 1 + side * side
        if self.positional_embedding.shape[0] != self.num_tokens:
            raise ConfigError(
                f"the tower's position embedding has {self.positional_embedding.shape[0]} entries, "
                f"image_size {self.image_size} needs {self.num_tokens}"
            )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.conv1(self.prepare_images(images)).flatten(2).transpose(1, 2)
        cls = self.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1) + self.positional_embedding.to(x.dtype)
        x = self.ln_pre(x)
        if not self.batch_first:
            x = x.transpose(0, 1)
        x = self.run_blocks(self.transformer.resblocks, x)
        return x if self.batch_first else x.transpose(0, 1)

    # ---- weights ----------------------------------------------------------------------------
    def load_tower_state_dict(self, state: Mapping[str, torch.Tensor], source: str) -> None:
        """Load OpenAI/open_clip/LAVIS CLIP vision weights (full-model checkpoints too)."""
        vision = select_prefix(state, OPEN_CLIP_PREFIXES)
        kept = len(self.transformer.resblocks)
        mapped = {}
        for key, value in vision.items():
            if key.startswith("transformer.resblocks."):
                if int(key.split(".")[2]) >= kept:
                    continue
            elif not key.startswith(_TOWER_PARTS):
                continue  # ln_post, proj, attention pooler: past the cut
            mapped[key] = value
        if "positional_embedding" in mapped:
            mapped["positional_embedding"] = resize_pos_embed(
                mapped["positional_embedding"],
                self.grid_size,
                align_corners=self.resize_align_corners,
                name="positional_embedding",
            )
        load_into(self, mapped, source)
