"""Base class and registry for image encoders (EVA ViT-g, CLIP ViT-L, open_clip, ...)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import nn

from lavis.common.registry import Registry
from lavis.common.schema import as_config


@dataclasses.dataclass
class VisionEncoderConfig:
    name: str
    image_size: int = 224
    # fp16 | bf16 | fp32: the dtype the frozen encoder's weights are kept and run in.
    precision: str = "fp32"
    freeze: bool = True
    drop_path_rate: float = 0.0
    use_grad_checkpoint: bool = False
    # Local file, folder or hub id of the weights; None = random init (tests, or weights come
    # from a full-model checkpoint loaded afterwards).
    pretrained: str | None = None


class VisionEncoder(nn.Module):
    """Maps images (B, 3, H, W) to patch tokens (B, num_tokens, num_features)."""

    Config: ClassVar[type] = VisionEncoderConfig
    num_features: int
    num_tokens: int

    @classmethod
    def parse_config(cls, cfg: Mapping[str, Any] | Any, where: str = "model.vision") -> Any:
        return as_config(cls.Config, cfg, where)

    @classmethod
    def from_config(cls, cfg: Any) -> VisionEncoder:
        raise NotImplementedError

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @property
    def dtype(self) -> torch.dtype:
        """The weights' dtype (what ``forward`` casts images to); fp32 for a weightless encoder."""
        for param in self.parameters():
            return param.dtype
        return torch.float32

    @property
    def trainable(self) -> bool:
        """Whether any of its weights is trainable (``freeze: false``)."""
        return any(p.requires_grad for p in self.parameters())


VISION_ENCODERS: Registry[type[VisionEncoder]] = Registry("vision encoder", VisionEncoder)
register_vision_encoder = VISION_ENCODERS.register
