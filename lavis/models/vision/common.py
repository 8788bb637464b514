"""What every token encoder shares: validated config, frozen precision, checkpointed blocks.

Frozen mode (``freeze: true``) means: weights cast to ``precision``, ``requires_grad=False`` and
eval mode for good - ``train()`` on a parent model cannot switch a frozen encoder back, so
drop-path and dropout stay off. On CPU a frozen fp16 encoder runs in bf16 instead (fp32 where the
CPU has no bf16 instructions): CPUs have no fast fp16 matrix kernels (see ``cpu_dtype``); moved
to an accelerator it is cast back to fp16. Forward casts the images to the weights' dtype and returns tokens
in that dtype (fp16/bf16 for a frozen half-precision encoder): callers upcast where they need fp32
(BLIP-2 applies ``ln_vision`` under autocast).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from lavis.common.errors import ConfigError
from lavis.models.llm.loading import DTYPES
from lavis.models.vision.base import VisionEncoder, VisionEncoderConfig

# The precision names -> dtypes table, shared with ``model.llm.dtype``.
PRECISIONS: dict[str, torch.dtype] = DTYPES


def cpu_dtype(dtype: torch.dtype, bf16_instructions: bool | None = None) -> torch.dtype:
    """The dtype a frozen encoder configured as ``dtype`` runs in on CPU (``bf16_instructions``:
    whether this CPU has them; None asks oneDNN).

    fp16 has no fast CPU kernels: three EVA ViT-g blocks at batch 1 on one thread of an AVX-512
    EPYC took 1.53 s in fp16, 0.43 s in fp32 and 0.12 s in bf16 (its ``avx512_bf16``), so fp16
    becomes bf16 (same memory) where the CPU has bf16 instructions, else fp32 (lossless).
    """
    if dtype != torch.float16:
        return dtype
    if bf16_instructions is None:
        bf16_instructions = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    return torch.bfloat16 if bf16_instructions else torch.float32


@dataclasses.dataclass
class TokenEncoderConfig(VisionEncoderConfig):
    """The base keys, checked: known precision, half precision only for frozen weights."""

    # Whether the encoder supports stochastic depth (subclasses built on blocks without it say no).
    supports_drop_path = True

    def validate(self) -> None:
        if self.precision not in PRECISIONS:
            raise ConfigError(f"'precision' must be one of {sorted(PRECISIONS)}, got {self.precision!r}")
        if not self.freeze and self.precision != "fp32":
            raise ConfigError(
                f"'precision: {self.precision}' needs 'freeze: true': a trainable encoder keeps fp32 "
                "weights and runs in half precision under autocast"
            )
        if self.image_size <= 0:
            raise ConfigError(f"'image_size' must be positive, got {self.image_size}")
        if not 0.0 <= self.drop_path_rate < 1.0:
            raise ConfigError(f"'drop_path_rate' must be in [0, 1), got {self.drop_path_rate}")
        if self.drop_path_rate > 0 and not self.supports_drop_path:
            raise ConfigError(
                f"'drop_path_rate' must be 0 for encoder '{self.name}': its blocks have no stochastic depth"
            )


@dataclasses.dataclass
class VitArchConfig(TokenEncoderConfig):
    """Architecture numbers of a plain ViT; subclasses set full-size defaults, tests override them."""

    patch_size: int = 16
    width: int = 768
    # Blocks built and run; the encoder returns the last one's output (before any final norm).
    depth: int = 12
    heads: int = 12
    mlp_ratio: float = 4.0
    layer_norm_eps: float = 1e-6

    def validate(self) -> None:
        super().validate()
        for key in ("patch_size", "width", "depth", "heads"):
            if getattr(self, key) <= 0:
                raise ConfigError(f"'{key}' must be positive, got {getattr(self, key)}")
        if self.width % self.heads:
            raise ConfigError(f"'width' ({self.width}) must be divisible by 'heads' ({self.heads})")
        if self.image_size % self.patch_size:
            raise ConfigError(
                f"'image_size' ({self.image_size}) must be a multiple of 'patch_size' ({self.patch_size})"
            )


def blocks_up_to(layer: int, total: int, where: str) -> int:
    """How many blocks to keep so that block ``layer`` (Python index, -1 = last) is the output."""
    index = layer + total if layer < 0 else layer
    if not 0 <= index < total:
        raise ConfigError(f"config key '{where}': {layer} is not a block of a {total}-block transformer")
    return index + 1


class TokenEncoder(VisionEncoder):
    """A vision encoder with the shared frozen/precision/checkpointing behaviour."""

    def __init__(self, cfg: TokenEncoderConfig) -> None:
        super().__init__()
        self.image_size = cfg.image_size
        self.use_grad_checkpoint = cfg.use_grad_checkpoint
        self.frozen = False
        self.frozen_dtype: torch.dtype | None = None  # the configured precision of frozen weights
        self._substituted = False  # True while a frozen fp16 encoder runs in cpu_dtype on CPU

    # ---- construction ---------------------------------------------------------------------
    @classmethod
    def from_config(cls, cfg: Any) -> TokenEncoder:
        cfg = cls.parse_config(cfg)
        encoder = cls(cfg)
        if cfg.pretrained:
            encoder.load_pretrained(cfg.pretrained)
        return encoder.apply_freeze(cfg)

    def load_pretrained(self, source: str) -> None:
        raise NotImplementedError

    def apply_freeze(self, cfg: TokenEncoderConfig) -> TokenEncoder:
        """Frozen: cast to ``precision``, no grads, eval for good. Otherwise fp32 and trainable."""
        if cfg.freeze:
            self.to(PRECISIONS[cfg.precision])  # as configured even on CPU: the model may go to a GPU next
            self.frozen_dtype = PRECISIONS[cfg.precision]
            self.requires_grad_(False)
            self.frozen = True
            self.eval()
        return self

    def _apply(self, fn, recurse: bool = True):  # type: ignore[no-untyped-def]
        """After every move or cast: a frozen encoder configured fp16 that lands on CPU in fp16
        switches to ``cpu_dtype`` (fp16 has no fast CPU kernels), and back to fp16 when it moves to
        an accelerator. Other precisions, and explicit casts to another dtype, are left alone."""
        module = super()._apply(fn, recurse)
        first = next(self.parameters(), None)
        if self.frozen_dtype != torch.float16 or first is None or first.device.type == "meta":
            return module
        substitute = cpu_dtype(torch.float16)
        if first.device.type == "cpu" and first.dtype == torch.float16 and substitute != torch.float16:
            self._cast_frozen(substitute, substituted=True)
        elif first.device.type != "cpu" and self._substituted and first.dtype == substitute:
            self._cast_frozen(torch.float16, substituted=False)
        elif first.dtype != substitute:
            self._substituted = False
        return module

    def _cast_frozen(self, dtype: torch.dtype, substituted: bool) -> None:
        configured, self.frozen_dtype = self.frozen_dtype, None  # the nested .to() skips the check above
        self.to(dtype)
        self.frozen_dtype, self._substituted = configured, substituted

    def train(self, mode: bool = True) -> TokenEncoder:
        return super().train(mode and not self.frozen)

    # ---- forward helpers ------------------------------------------------------------------
    def prepare_images(self, images: torch.Tensor) -> torch.Tensor:
        """Check the shape and cast to the weights' dtype."""
        size = self.image_size
        if images.dim() != 4 or images.shape[1] != 3 or images.shape[2] != size or images.shape[3] != size:
            raise ValueError(
                f"{type(self).__name__} expects images of shape (B, 3, {size}, {size}) "
                f"(model.vision.image_size={size}), got {tuple(images.shape)}"
            )
        return images.to(self.dtype)

    def run_blocks(self, blocks: Iterable[nn.Module], x: torch.Tensor) -> torch.Tensor:
        """Apply blocks in order; with activation checkpointing when configured and training."""
        use_checkpoint = self.use_grad_checkpoint and self.training and torch.is_grad_enabled()
        for block in blocks:
            x = checkpoint(block, x, use_reentrant=False) if use_checkpoint else block(x)
        return x
