"""EVA-CLIP ViT-g/14 as BLIP-2 uses it: 39 of its 40 blocks, tokens before any final norm.

Blocks are timm's ``EvaBlock`` (pre-norm, fused qkv weight with separate ``q_bias``/``v_bias``
and no key bias, GELU MLP, drop-path), which is the EVA-CLIP block exactly; the shell around
them (patch embedding, class token, absolute position embedding, the block loop with optional
activation checkpointing) is ours, so that parameter names are LAVIS's and no final norm or
head exists. BLIP-2 applies its own ``ln_vision`` to the output.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from functools import partial

import torch
from torch import nn

from lavis.models.vision.base import register_vision_encoder
from lavis.models.vision.common import TokenEncoder, VitArchConfig
from lavis.models.vision.eva_keys import eva_state_from_hf, eva_state_from_lavis, is_hf_layout, keep_eva_key
from lavis.models.vision.pos_embed import resize_pos_embed
from lavis.models.vision.weights import load_into, load_weights

# (our encoder state, ln_vision state): what the LAVIS and HF key maps return.
KeyMapResult = tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]

EVA_VIT_G_URL = "https://storage.googleapis.com/sfr-vision-language-research/LAVIS/models/BLIP2/eva_vit_g.pth"
EVA_WEIGHT_FILES = ("eva_vit_g.pth", "model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")
EVA_HINT = (
    f"EVA ViT-g weights: LAVIS's {EVA_VIT_G_URL} (set 'pretrained' to the downloaded file), or a "
    "Hugging Face BLIP-2 checkpoint folder or id such as Salesforce/blip2-flan-t5-xl."
)


@dataclasses.dataclass
class EvaVitConfig(VitArchConfig):
    """Full-size defaults: EVA-CLIP ViT-g/14 (width 1408, 16 heads, MLP 6144) with 39 blocks."""

    patch_size: int = 14
    width: int = 1408
    # EVA-CLIP-g has 40 blocks; BLIP-2 drops the last and uses the 39th block's output.
    depth: int = 39
    heads: int = 16
    # LAVIS's ratio; int(1408 * 4.3637) = 6144.
    mlp_ratio: float = 4.3637
    layer_norm_eps: float = 1e-6


@register_vision_encoder("eva_clip_g")
class EvaVisionTransformer(TokenEncoder):
    """Images (B, 3, S, S) -> tokens (B, 1 + (S/14)^2, 1408): CLS then patches, no final norm."""

    Config = EvaVitConfig

    def __init__(self, cfg: EvaVitConfig) -> None:
        super().__init__(cfg)
        from timm.layers import PatchEmbed  # imported here: timm costs seconds at `import lavis`
        from timm.models.eva import EvaBlock

        self.patch_embed = PatchEmbed(
            img_size=cfg.image_size, patch_size=cfg.patch_size, in_chans=3, embed_dim=cfg.width
        )
        grid = tuple(self.patch_embed.grid_size)
        self.grid_size = grid
        self.num_features = cfg.width
        self.num_tokens = 1 + grid[0] * grid[1]
        self.cls_token = nn.Parameter(torch.zeros(1, 1, cfg.width))
        self.pos_embed = nn.Parameter(torch.zeros(1, self.num_tokens, cfg.width))
        # Stochastic depth grows linearly from 0 at the first block to the rate at the last.
        steps = max(cfg.depth - 1, 1)
        rates = [cfg.drop_path_rate * i / steps for i in range(cfg.depth)]
        norm = partial(nn.LayerNorm, eps=cfg.layer_norm_eps)
        self.blocks = nn.ModuleList(
            EvaBlock(
                dim=cfg.width,
                num_heads=cfg.heads,
                qkv_bias=True,
                qkv_fused=True,
                mlp_ratio=cfg.mlp_ratio,
                drop_path=rate,
                norm_layer=norm,
                init_values=None,
            )
            for rate in rates
        )
        for block in self.blocks:
            # SDPA (fused attention) always: timm follows a process-wide switch (TIMM_FUSED_ATTN).
            block.attn.fused_attn = True
        self._init_weights()

    def _init_weights(self) -> None:
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        for module in self.blocks.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(self.prepare_images(images))
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        return self.run_blocks(self.blocks, x)

    # ---- weights ----------------------------------------------------------------------------
    def load_pretrained(self, source: str) -> None:
        """A LAVIS ``eva_vit_g.pth``, a LAVIS BLIP-2 checkpoint, or HF BLIP-2 weights (auto-detected)."""
        state, path = load_weights(source, EVA_WEIGHT_FILES, "EVA ViT-g", EVA_HINT, keep=keep_eva_key)
        if is_hf_layout(state):
            self.load_hf_state_dict(state, source=path)
        else:
            self.load_lavis_state_dict(state, source=path)

    def load_lavis_state_dict(
        self, state: Mapping[str, torch.Tensor], source: str = "LAVIS EVA state dict"
    ) -> dict[str, torch.Tensor]:
        """Load LAVIS-layout weights; returns the checkpoint's ``ln_vision`` weights (maybe empty)."""
        return self._load_mapped(eva_state_from_lavis, state, source)

    def load_hf_state_dict(
        self, state: Mapping[str, torch.Tensor], source: str = "HF Blip2VisionModel state dict"
    ) -> dict[str, torch.Tensor]:
        """Load HF ``Blip2VisionModel`` weights; returns ``post_layernorm`` as ``ln_vision`` weights."""
        return self._load_mapped(eva_state_from_hf, state, source)

    def map_state(
        self, state: Mapping[str, torch.Tensor], key_map: Callable[..., KeyMapResult] = eva_state_from_lavis
    ) -> KeyMapResult:
        """``state`` under our names (via ``key_map``), with ``pos_embed`` fitted to this image size;
        plus the checkpoint's ``ln_vision`` weights. Blocks past ``depth`` and heads are left out."""
        mapped, ln_vision = key_map(state, depth=len(self.blocks))
        if "pos_embed" in mapped:  # weights trained at another image size: LAVIS's bicubic resize
            mapped["pos_embed"] = resize_pos_embed(mapped["pos_embed"], self.grid_size, align_corners=False)
        return mapped, ln_vision

    def _load_mapped(
        self, key_map: Callable[..., KeyMapResult], state: Mapping[str, torch.Tensor], source: str
    ) -> dict[str, torch.Tensor]:
        mapped, ln_vision = self.map_state(state, key_map)
        load_into(self, mapped, source)
        return ln_vision
