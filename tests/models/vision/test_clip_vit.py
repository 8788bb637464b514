"""CLIP ViT-L (BLIP-2 variant): LAVIS/OpenAI layout, parity with open_clip's tower, size, resizing."""

from __future__ import annotations

from functools import partial

import pytest
import torch

from lavis.common.errors import ConfigError
from lavis.models.vision.clip_vit import ClipVisionTransformer
from lavis.models.vision.presets import vision_preset


def _open_clip_tower(layers: int, image_size: int = 56):
    """open_clip's own ViT (QuickGELU, as OpenAI's CLIP): the reference and the weight source."""
    from open_clip.transformer import LayerNorm, QuickGELU, VisionTransformer

    torch.manual_seed(0)
    return VisionTransformer(
        image_size=image_size, patch_size=14, width=32, layers=layers, heads=2, mlp_ratio=4.0,
        act_layer=QuickGELU, norm_layer=partial(LayerNorm, eps=1e-5), output_dim=16,
    )


def test_tiny_tokens_and_lavis_parameter_names(make_encoder, images):
    encoder = make_encoder("clip_L_tiny")
    assert isinstance(encoder, ClipVisionTransformer)
    assert encoder(images(56)).shape == (2, 17, 32)
    keys = set(encoder.state_dict())
    assert {
        "conv1.weight", "class_embedding", "positional_embedding", "ln_pre.weight",
        "transformer.resblocks.1.attn.in_proj_weight", "transformer.resblocks.1.attn.out_proj.weight",
        "transformer.resblocks.1.ln_1.weight", "transformer.resblocks.1.mlp.c_fc.weight",
        "transformer.resblocks.1.mlp.c_proj.weight", "transformer.resblocks.1.ln_2.weight",
    } <= keys
    assert not any(k.startswith(("ln_post", "proj", "transformer.resblocks.2.")) for k in keys)


def test_lavis_and_open_clip_checkpoints_match_open_clip_tower(make_encoder, images, perturb, open_clip_tokens, tmp_path):
    tower = perturb(_open_clip_tower(layers=3))
    x = images(56)
    expected = open_clip_tokens(tower, x, 1)  # output of block 1 = a 2-block encoder

    encoder = make_encoder("clip_L_tiny")
    encoder.load_lavis_state_dict(tower.state_dict())  # LAVIS clip_vit_L.pth: bare OpenAI keys
    assert torch.allclose(encoder(x), expected, atol=1e-5)

    # An open_clip full-model checkpoint: visual.* beside text-tower keys of the same names.
    full = {f"visual.{k}": v for k, v in tower.state_dict().items()}
    full.update({"positional_embedding": torch.zeros(8, 32), "transformer.resblocks.0.ln_1.weight": torch.zeros(32)})
    torch.save(full, tmp_path / "open_clip_pytorch_model.bin")
    loaded = make_encoder("clip_L_tiny", pretrained=str(tmp_path))
    assert torch.allclose(loaded(x), expected, atol=1e-5)


def test_position_embedding_resized_like_lavis(make_encoder, images, perturb):
    tower = perturb(_open_clip_tower(layers=2, image_size=56))
    encoder = make_encoder("clip_L_tiny", image_size=84)
    encoder.load_lavis_state_dict(tower.state_dict())
    old = tower.positional_embedding.detach()
    new = encoder.positional_embedding.detach()
    assert new.shape == (1 + 36, 32)
    assert torch.equal(new[0], old[0])  # class position kept
    old_grid, new_grid = old[1:].reshape(4, 4, 32), new[1:].reshape(6, 6, 32)
    # align_corners=True (LAVIS's CLIP resize) keeps the four corner positions exactly.
    for i, j in [(0, 0), (0, -1), (-1, 0), (-1, -1)]:
        assert torch.allclose(new_grid[i, j], old_grid[i, j], atol=1e-6)
    assert encoder(images(84)).shape == (2, 37, 32)


def test_full_size_parameter_count_on_meta():
    with torch.device("meta"):
        encoder = ClipVisionTransformer.from_config(vision_preset("clip_L", pretrained=None))
    width, patch, side, depth = 1024, 14, 16, 23
    per_block = 4 * width + (3 * width * width + 3 * width) + (width * width + width) + (
        4 * width * width + 4 * width) + (4 * width * width + width)  # 2 LNs, in_proj, out_proj, c_fc, c_proj
    stem = 3 * patch * patch * width + width + (1 + side * side) * width + 2 * width  # conv1, cls, pos, ln_pre
    assert sum(p.numel() for p in encoder.parameters()) == stem + depth * per_block == 290_581_504
    assert (encoder.num_tokens, encoder.num_features) == (257, 1024)


def test_drop_path_is_rejected_for_clip_blocks():
    with pytest.raises(ConfigError, match="drop_path_rate"):
        ClipVisionTransformer.parse_config(vision_preset("clip_L_tiny", drop_path_rate=0.1))
