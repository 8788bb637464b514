"""CLIP ViT-L/14 as BLIP-2 uses it: OpenAI weights, the last block dropped, no final norm.

Built from open_clip's ``VisionTransformer`` (QuickGELU, as OpenAI trained it) with the
architecture numbers as config fields. The BLIP-2 paper drops the last of the 24 blocks (23 used,
the default). LAVIS's released ``blip2_pretrain_vitL`` / ``*_vitL`` checkpoints were trained with
21 blocks (its ``create_clip_vit_L`` builds ``layers - 1`` blocks from ``layers=22``); set
``depth: 21`` to reproduce those.
"""

from __future__ import annotations

import dataclasses
from functools import partial

from torch import nn

from lavis.models.vision.base import register_vision_encoder
from lavis.models.vision.common import VitArchConfig
from lavis.models.vision.open_clip_tokens import OpenClipTokenEncoder
from lavis.models.vision.weights import load_weights

CLIP_VIT_L_URL = "https://storage.googleapis.com/sfr-vision-language-research/LAVIS/models/BLIP2/clip_vit_L.pth"
CLIP_WEIGHT_FILES = ("clip_vit_L.pth", "open_clip_model.safetensors", "open_clip_pytorch_model.bin")
CLIP_HINT = (
    f"CLIP ViT-L/14 weights: LAVIS's {CLIP_VIT_L_URL}, or an open_clip checkpoint such as the Hub "
    "repo timm/vit_large_patch14_clip_224.openai (set 'pretrained' to the file, folder or id)."
)


@dataclasses.dataclass
class ClipVitConfig(VitArchConfig):
    """Full-size defaults: CLIP ViT-L/14 (width 1024, 16 heads) with 23 of its 24 blocks."""

    supports_drop_path = False

    patch_size: int = 14
    width: int = 1024
    depth: int = 23
    heads: int = 16
    mlp_ratio: float = 4.0
    layer_norm_eps: float = 1e-5
    # OpenAI's CLIP was trained with QuickGELU; open_clip models trained with nn.GELU set false.
    quick_gelu: bool = True


@register_vision_encoder("clip_L")
class ClipVisionTransformer(OpenClipTokenEncoder):
    """Images (B, 3, S, S) -> tokens (B, 1 + (S/14)^2, 1024): CLS then patches, before ``ln_post``."""

    Config = ClipVitConfig
    resize_align_corners = True  # as LAVIS's clip_vit.interpolate_pos_embed

    def __init__(self, cfg: ClipVitConfig) -> None:
        super().__init__(cfg)
        from open_clip.transformer import LayerNorm, QuickGELU, VisionTransformer

        tower = VisionTransformer(
            image_size=cfg.image_size,
            patch_size=cfg.patch_size,
            width=cfg.width,
            layers=cfg.depth,
            heads=cfg.heads,
            mlp_ratio=cfg.mlp_ratio,
            act_layer=QuickGELU if cfg.quick_gelu else nn.GELU,
            norm_layer=partial(LayerNorm, eps=cfg.layer_norm_eps),
        )
        self.adopt_tower(tower, cfg.depth)

    def load_pretrained(self, source: str) -> None:
        state, path = load_weights(source, CLIP_WEIGHT_FILES, "CLIP ViT-L/14", CLIP_HINT)
        self.load_tower_state_dict(state, source=path)

    def load_lavis_state_dict(self, state: dict, source: str = "LAVIS CLIP ViT-L state dict") -> None:
        """LAVIS ``clip_vit_L.pth`` or ``visual_encoder.*`` of a BLIP-2 ViT-L checkpoint."""
        self.load_tower_state_dict(state, source)
