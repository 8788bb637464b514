"""A Hugging Face CLIP image tower (PLIP, ``vinid/plip``) as a patch-token encoder.

``pretrained`` (required) is a local folder or a Hub id of a ``CLIPModel`` or ``CLIPVisionModel``
checkpoint; ``transformers.CLIPVisionModel`` loads the vision half of either. ``layer`` picks
the block whose output is returned (-2, default: last-but-one, BLIP-2's choice; -1: last); HF
CLIP's last hidden state carries no final norm (``post_layernorm`` only touches the pooled CLS),
so the tokens are pre-norm like the other encoders'. Blocks past ``layer`` and
``post_layernorm`` are removed.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lavis.common.errors import ConfigError, WeightsNotFoundError
from lavis.models.vision.base import register_vision_encoder
from lavis.models.vision.common import TokenEncoder, TokenEncoderConfig, blocks_up_to
from lavis.models.vision.weights import hub_repo_id

PLIP_HINT = (
    "PLIP is the Hugging Face CLIP checkpoint vinid/plip: `hf download vinid/plip --local-dir <folder>` "
    "and set 'pretrained' to that folder."
)


@dataclasses.dataclass
class HFClipConfig(TokenEncoderConfig):
    supports_drop_path = False

    # Block whose output is returned (Python index): -2 = last-but-one (BLIP-2), -1 = last.
    layer: int = -2

    def validate(self) -> None:
        super().validate()
        if not self.pretrained:
            raise ConfigError("'pretrained' is required: a folder or Hub id of a CLIP checkpoint (e.g. vinid/plip)")


def load_clip_vision_model(source: str) -> nn.Module:
    """``transformers.CLIPVisionModel`` from a folder or Hub id; a clear error when it is not there."""
    from transformers import CLIPVisionModel

    folder = Path(source).expanduser()
    if not folder.exists() and hub_repo_id(source) is None:
        raise WeightsNotFoundError(f"CLIP vision weights: no folder at '{source}'. {PLIP_HINT}")
    target = str(folder) if folder.exists() else hub_repo_id(source)
    try:
        return CLIPVisionModel.from_pretrained(target)
    except OSError as err:  # missing files, offline without a cached copy, unknown repo
        raise WeightsNotFoundError(f"CLIP vision weights '{source}' could not be loaded ({err}). {PLIP_HINT}") from err


@register_vision_encoder("hf_clip")
class HFClipVisionEncoder(TokenEncoder):
    """Images (B, 3, S, S) -> CLS + patch tokens of the chosen block of an HF CLIP vision tower."""

    Config = HFClipConfig

    def __init__(self, cfg: HFClipConfig) -> None:
        super().__init__(cfg)
        if not cfg.pretrained:  # also when a caller clears it to skip loading: the config is in there
            raise ConfigError("hf_clip needs 'pretrained': the tower's architecture comes from its config.json")
        self.model = load_clip_vision_model(cfg.pretrained)
        config = self.model.config
        # transformers 5 flattens CLIPVisionModel; earlier releases nest it under `vision_model`.
        tower = getattr(self.model, "vision_model", self.model)
        kept = blocks_up_to(cfg.layer, len(tower.encoder.layers), "model.vision.layer")
        tower.encoder.layers = tower.encoder.layers[:kept]
        config.num_hidden_layers = kept
        tower.post_layernorm = nn.Identity()
        if cfg.image_size % config.patch_size:
            raise ConfigError(f"'image_size' ({cfg.image_size}) must be a multiple of the patch size {config.patch_size}")
        if cfg.use_grad_checkpoint:
            self.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        # Another image size than the checkpoint's: HF resizes the position embedding (bicubic).
        self.interpolate_pos_encoding = cfg.image_size != config.image_size
        side = cfg.image_size // config.patch_size
        self.num_features = config.hidden_size
        self.num_tokens = 1 + side * side

    @classmethod
    def from_config(cls, cfg: Any) -> HFClipVisionEncoder:
        cfg = cls.parse_config(cfg)
        return cls(cfg).apply_freeze(cfg)  # weights come with the checkpoint the tower is built from

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        out = self.model(
            pixel_values=self.prepare_images(images), interpolate_pos_encoding=self.interpolate_pos_encoding
        )
        return out.last_hidden_state
