"""Tiny encoders and tiny real checkpoints (open_clip folder, HF CLIPModel folder) for the vision tests."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

import lavis.models.vision  # noqa: F401  (registers the encoders)
from lavis.models.vision.base import VISION_ENCODERS, VisionEncoder
from lavis.models.vision.presets import vision_preset

TINY_OPEN_CLIP = "lavis-test-tiny-vit"
TINY_OPEN_CLIP_CFG = {
    "embed_dim": 16,
    "quick_gelu": True,
    "vision_cfg": {"image_size": 32, "layers": 3, "width": 32, "head_width": 16, "patch_size": 8},
    "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 32, "heads": 2, "layers": 1},
}


def build(cfg: dict[str, Any]) -> VisionEncoder:
    cls = VISION_ENCODERS.get(cfg["name"])
    return cls.from_config(cls.parse_config(cfg))


@pytest.fixture
def make_encoder() -> Callable[..., VisionEncoder]:
    """``make_encoder("eva_clip_g_tiny", freeze=False)``: a preset with overrides, built."""

    def make(preset: str, **overrides: Any) -> VisionEncoder:
        return build(vision_preset(preset, **overrides))

    return make


@pytest.fixture
def images() -> Callable[[int], torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return lambda size, batch=2: torch.randn(batch, 3, size, size, generator=generator)


def perturb_(module: torch.nn.Module, scale: float = 0.2) -> torch.nn.Module:
    """Make every weight non-trivial (zero-initialised biases would hide key-mapping mistakes)."""
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for param in module.parameters():
            param.add_(torch.randn(param.shape, generator=generator) * scale)
    return module.eval()


@pytest.fixture
def perturb() -> Callable[..., torch.nn.Module]:
    return perturb_


@pytest.fixture(scope="session")
def tiny_open_clip(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, torch.nn.Module, Path]:
    """(name, model, folder): a tiny open_clip CLIP registered under ``name``, saved in Hub layout."""
    import open_clip

    root = tmp_path_factory.mktemp("open_clip")
    config_file = root / f"{TINY_OPEN_CLIP}.json"
    config_file.write_text(json.dumps(TINY_OPEN_CLIP_CFG))
    open_clip.add_model_config(config_file)
    torch.manual_seed(0)
    model = perturb_(open_clip.create_model(TINY_OPEN_CLIP))
    folder = root / "checkpoint"
    folder.mkdir()
    torch.save(model.state_dict(), folder / "open_clip_pytorch_model.bin")
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": TINY_OPEN_CLIP_CFG}))
    return TINY_OPEN_CLIP, model, folder


@pytest.fixture(scope="session")
def tiny_plip(tmp_path_factory: pytest.TempPathFactory) -> tuple[torch.nn.Module, Path]:
    """A tiny ``CLIPModel`` saved with save_pretrained: PLIP's checkpoint layout at test size."""
    from transformers import CLIPConfig, CLIPModel, CLIPTextConfig, CLIPVisionConfig

    text = CLIPTextConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
        vocab_size=99, max_position_embeddings=16, projection_dim=16, bos_token_id=0, eos_token_id=1,
    )
    vision = CLIPVisionConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=2,
        image_size=32, patch_size=8, projection_dim=16,
    )
    torch.manual_seed(0)
    model = CLIPModel(CLIPConfig(text_config=text.to_dict(), vision_config=vision.to_dict(), projection_dim=16))
    perturb_(model)
    folder = tmp_path_factory.mktemp("plip")
    model.save_pretrained(folder)
    return model, folder


def open_clip_reference(visual: torch.nn.Module, x: torch.Tensor, index: int) -> torch.Tensor:
    """CLS + patch tokens after block ``index`` as open_clip itself computes them."""
    out = visual.forward_intermediates(
        x, indices=[index], output_fmt="NLC", output_extra_tokens=True, intermediates_only=True
    )
    return torch.cat([out["image_intermediates_prefix"][0], out["image_intermediates"][0]], dim=1)


@pytest.fixture
def open_clip_tokens() -> Callable[[torch.nn.Module, torch.Tensor, int], torch.Tensor]:
    return open_clip_reference
