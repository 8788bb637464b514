"""EVA ViT-g: shapes, full-size size, drop-path, checkpointing, LAVIS and HF weight layouts."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from lavis.models.vision.eva_vit import EvaVisionTransformer
from lavis.models.vision.presets import vision_preset

# The key names of LAVIS's eva_vit.py / eva_vit_g.pth (block 0 shown; every block has them).
LAVIS_KEYS = [
    "cls_token", "pos_embed", "patch_embed.proj.weight", "patch_embed.proj.bias",
    "blocks.0.norm1.weight", "blocks.0.norm1.bias", "blocks.0.attn.qkv.weight", "blocks.0.attn.q_bias",
    "blocks.0.attn.v_bias", "blocks.0.attn.proj.weight", "blocks.0.attn.proj.bias", "blocks.0.norm2.weight",
    "blocks.0.norm2.bias", "blocks.0.mlp.fc1.weight", "blocks.0.mlp.fc1.bias", "blocks.0.mlp.fc2.weight",
    "blocks.0.mlp.fc2.bias",
]


def test_tiny_tokens_are_cls_plus_patches(make_encoder, images):
    encoder = make_encoder("eva_clip_g_tiny")
    assert isinstance(encoder, EvaVisionTransformer)
    assert (encoder.num_tokens, encoder.num_features) == (1 + 4 * 4, 32)
    assert encoder(images(56)).shape == (2, 17, 32)
    assert sorted(encoder.state_dict()) == sorted(
        LAVIS_KEYS + [k.replace("blocks.0.", "blocks.1.") for k in LAVIS_KEYS if k.startswith("blocks.0.")]
    )


def test_full_size_parameter_count_on_meta():
    with torch.device("meta"):
        encoder = EvaVisionTransformer.from_config(vision_preset("eva_clip_g", pretrained=None))
    width, patch, side, depth = 1408, 14, 224 // 14, 39
    hidden = int(width * 4.3637)
    assert hidden == 6144
    per_block = (
        2 * width  # norm1
        + 3 * width * width + 2 * width  # qkv weight, q_bias, v_bias
        + width * width + width  # proj
        + 2 * width  # norm2
        + width * hidden + hidden + hidden * width + width  # fc1, fc2
    )
    stem = 3 * patch * patch * width + width + width + (1 + side * side) * width  # conv, cls, pos
    count = sum(p.numel() for p in encoder.parameters())
    assert count == stem + depth * per_block
    assert 985e6 < count < 986e6
    assert (encoder.num_tokens, encoder.num_features, len(encoder.blocks)) == (257, 1408, 39)
    assert all(p.dtype == torch.float16 and p.device.type == "meta" for p in encoder.parameters())


def test_drop_path_follows_linear_rule_and_acts_only_in_training(make_encoder, images):
    encoder = make_encoder("eva_clip_g_tiny", depth=4, drop_path_rate=0.3, freeze=False)
    rates = [getattr(block.drop_path1, "drop_prob", 0.0) for block in encoder.blocks]  # rate 0: Identity
    assert torch.allclose(torch.tensor(rates), torch.tensor([0.0, 0.1, 0.2, 0.3]))
    plain = make_encoder("eva_clip_g_tiny", depth=4, freeze=False)
    plain.load_state_dict(encoder.state_dict())
    x = images(56)

    encoder.eval()
    plain.eval()
    assert torch.equal(encoder(x), plain(x))

    encoder.train()
    torch.manual_seed(0)
    first = encoder(x)
    torch.manual_seed(1)
    second = encoder(x)
    assert not torch.allclose(first, second)
    assert not torch.allclose(first, plain(x))


def _count_block_calls(encoder) -> list[int]:
    """Count block forward runs (checkpoint recomputation bypasses module hooks, so wrap forward)."""
    calls = [0]

    def counting(forward):
        def run(*args, **kwargs):
            calls[0] += 1
            return forward(*args, **kwargs)

        return run

    for block in encoder.blocks:
        block.forward = counting(block.forward)
    return calls


def test_grad_checkpointing_gives_same_output_and_gradients(make_encoder, images):
    plain = make_encoder("eva_clip_g_tiny", freeze=False)
    ckpt = make_encoder("eva_clip_g_tiny", freeze=False, use_grad_checkpoint=True)
    ckpt.load_state_dict(plain.state_dict())
    plain.train()
    ckpt.train()
    calls = _count_block_calls(ckpt)
    x = images(56)

    out_plain, out_ckpt = plain(x), ckpt(x)
    out_plain.square().mean().backward()
    out_ckpt.square().mean().backward()

    assert torch.allclose(out_plain, out_ckpt, atol=1e-6)
    grads_plain = dict(plain.named_parameters())
    for name, param in ckpt.named_parameters():
        assert torch.allclose(param.grad, grads_plain[name].grad, atol=1e-6), name
    assert calls[0] == 2 * len(ckpt.blocks)  # every block recomputed during backward

    calls[0] = 0
    ckpt.eval()
    ckpt(x)
    assert calls[0] == len(ckpt.blocks)  # no checkpointing outside training


def _timm_eva(depth: int):
    """timm's EVA with a final norm and a head: the LAVIS ``eva_vit`` layout, as a reference."""
    from functools import partial

    from timm.models.eva import Eva

    torch.manual_seed(0)
    model = Eva(
        img_size=56, patch_size=14, embed_dim=32, depth=depth, num_heads=2, mlp_ratio=4.3637,
        qkv_bias=True, norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), num_classes=5, global_pool="token",
    )
    return model


def _timm_tokens(model, x: torch.Tensor, index: int) -> torch.Tensor:
    (spatial, prefix), = model.forward_intermediates(
        x, indices=[index], norm=False, output_fmt="NLC", return_prefix_tokens=True, intermediates_only=True
    )
    return torch.cat([prefix, spatial], dim=1)


def test_lavis_layout_loads_with_deep_block_norm_and_head_dropped(make_encoder, images, perturb, tmp_path):
    reference = perturb(_timm_eva(depth=3))
    state = reference.state_dict()
    assert set(LAVIS_KEYS) | {"blocks.2.attn.q_bias", "norm.weight", "head.weight"} <= set(state)
    x = images(56)
    expected = _timm_tokens(reference, x, index=1)

    encoder = make_encoder("eva_clip_g_tiny")  # 2 blocks: block 2 of the checkpoint is dropped
    assert encoder.load_lavis_state_dict(state) == {}
    assert torch.allclose(encoder(x), expected, atol=1e-5)

    # A full LAVIS BLIP-2 checkpoint ({"model": ...}, visual_encoder.* beside ln_vision and Q-Former).
    full = {f"visual_encoder.{k}": v for k, v in state.items()}
    full.update({"ln_vision.weight": torch.full((32,), 2.0), "ln_vision.bias": torch.zeros(32), "Qformer.w": torch.ones(1)})
    torch.save({"model": full}, tmp_path / "blip2_pretrained.pth")
    loaded = make_encoder("eva_clip_g_tiny", pretrained=str(tmp_path / "blip2_pretrained.pth"))
    assert torch.allclose(loaded(x), expected, atol=1e-5)
    assert torch.equal(encoder.load_lavis_state_dict(full)["weight"], torch.full((32,), 2.0))


def _hf_blip2_vision(image_size: int, layers: int = 2):
    from transformers import Blip2VisionConfig, Blip2VisionModel

    config = Blip2VisionConfig(
        hidden_size=32, intermediate_size=int(32 * 4.3637), num_hidden_layers=layers, num_attention_heads=2,
        image_size=image_size, patch_size=14,
    )
    torch.manual_seed(0)
    return Blip2VisionModel(config)


def test_hf_blip2_vision_parity_and_post_layernorm_is_ln_vision(make_encoder, images, perturb, tmp_path):
    hf = perturb(_hf_blip2_vision(56))  # also makes the key third of qkv.bias non-zero
    x = images(56)
    with torch.no_grad():
        out = hf(pixel_values=x, output_hidden_states=True)

    encoder = make_encoder("eva_clip_g_tiny")
    ln_vision = encoder.load_hf_state_dict(hf.state_dict())
    tokens = encoder(x)
    # hidden_states[-1] is the last block's output; last_hidden_state has post_layernorm on top.
    assert torch.allclose(tokens, out.hidden_states[-1], atol=1e-5)
    normed = F.layer_norm(tokens, (32,), ln_vision["weight"], ln_vision["bias"], eps=1e-6)
    assert torch.allclose(normed, out.last_hidden_state, atol=1e-5)

    # A HF Blip2ForConditionalGeneration-style folder: vision_model.* beside the rest.
    folder = tmp_path / "blip2-hf"
    folder.mkdir()
    weights = {f"vision_model.{k}": v.contiguous() for k, v in hf.state_dict().items()}
    weights["qformer.layer.weight"] = torch.ones(2)
    save_file(weights, str(folder / "model.safetensors"))
    loaded = make_encoder("eva_clip_g_tiny", pretrained=str(folder))
    assert torch.allclose(loaded(x), out.hidden_states[-1], atol=1e-5)


def test_position_embedding_is_interpolated_for_another_image_size(make_encoder, images, perturb):
    hf = perturb(_hf_blip2_vision(56))  # trained at 56 px: a 4x4 grid
    x = images(84)  # 6x6 grid
    with torch.no_grad():
        expected = hf(pixel_values=x, interpolate_pos_encoding=True, output_hidden_states=True).hidden_states[-1]

    encoder = make_encoder("eva_clip_g_tiny", image_size=84)
    encoder.load_hf_state_dict(hf.state_dict())
    assert encoder.pos_embed.shape == (1, 1 + 36, 32)
    assert torch.equal(encoder.pos_embed[0, 0], hf.embeddings.position_embedding[0, 0].detach())
    assert encoder(x).shape == (2, 37, 32)
    assert torch.allclose(encoder(x), expected, atol=1e-5)
