"""Weightless builds (``load_weights=False``, used by from_hf and parameter counting) read no
weights, except where the architecture itself lives in the checkpoint (hf_clip / PLIP)."""

from __future__ import annotations

import pytest

from lavis.common.errors import ConfigError
from lavis.models.blip2.base import build_vision_encoder
from lavis.models.vision.presets import vision_preset


def test_hf_clip_keeps_its_checkpoint_eva_does_not_read_one(tmp_path):
    from transformers import CLIPVisionConfig, CLIPVisionModel

    config = CLIPVisionConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=2, image_size=56, patch_size=14
    )
    CLIPVisionModel(config).save_pretrained(tmp_path / "plip")
    plip = build_vision_encoder({"name": "hf_clip", "pretrained": str(tmp_path / "plip"), "image_size": 56}, False)
    assert plip.num_features == 32 and plip.num_tokens == 17
    # EVA's architecture is in its config: a weightless build must not even look for the file.
    eva = build_vision_encoder({**vision_preset("eva_clip_g_tiny"), "pretrained": str(tmp_path / "none.pth")}, False)
    assert eva.num_features == vision_preset("eva_clip_g_tiny")["width"]
    with pytest.raises(ConfigError, match="'pretrained' is required"):
        build_vision_encoder({"name": "hf_clip", "image_size": 56}, False)
