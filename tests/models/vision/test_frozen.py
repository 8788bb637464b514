"""Frozen mode for every encoder: no grads, eval for good, weights and tokens in the set precision."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lavis.common.errors import ConfigError
from lavis.models.vision.eva_vit import EvaVisionTransformer
from lavis.models.vision.presets import vision_preset

ENCODERS = ["eva_clip_g_tiny", "clip_L_tiny", "open_clip", "hf_clip"]


@pytest.fixture
def tiny_config(tiny_open_clip, tiny_plip):
    """The tiny config mapping of each encoder kind, and its image size."""

    def config(kind: str, **overrides):
        if kind == "open_clip":
            name, _, folder = tiny_open_clip
            base = {"name": "open_clip", "model_name": name, "pretrained": str(folder), "image_size": 32}
        elif kind == "hf_clip":
            base = {"name": "hf_clip", "pretrained": str(tiny_plip[1]), "image_size": 32}
        else:
            base = vision_preset(kind)
        return {**base, **overrides}

    return config


def _build(cfg):
    from lavis.models.vision.base import VISION_ENCODERS

    cls = VISION_ENCODERS.get(cfg["name"])
    return cls.from_config(cls.parse_config(cfg))


@pytest.mark.parametrize("kind", ENCODERS)
def test_frozen_half_precision_stays_eval_without_grads(kind, tiny_config, images):
    reference = _build(tiny_config(kind, precision="fp32"))
    frozen = _build(tiny_config(kind, precision="bf16"))
    frozen.load_state_dict(reference.state_dict())
    parent = nn.ModuleDict({"visual_encoder": frozen, "head": nn.Linear(2, 2)})

    parent.train()
    assert parent.training and parent["head"].training
    assert not any(m.training for m in frozen.modules())
    assert all(p.dtype == torch.bfloat16 and not p.requires_grad for p in frozen.parameters())

    x = images(frozen.image_size)
    tokens = frozen(x)  # fp32 images are cast to the weights' dtype
    assert tokens.dtype == torch.bfloat16 and not tokens.requires_grad
    assert tokens.shape == (2, frozen.num_tokens, frozen.num_features)
    expected = reference(x)
    relative_error = (tokens.float() - expected).norm() / expected.norm()
    assert relative_error < 0.02, relative_error  # bf16 rounding, not a different computation


@pytest.mark.parametrize("kind", ["eva_clip_g_tiny", "clip_L_tiny"])
def test_fp16_frozen_and_trainable_fp32(kind, tiny_config, images):
    half = _build(tiny_config(kind, precision="fp16"))
    assert half(images(56)).dtype == torch.float16

    trainable = _build(tiny_config(kind, freeze=False))
    nn.Sequential(trainable).train()
    assert trainable.training
    assert all(p.dtype == torch.float32 and p.requires_grad for p in trainable.parameters())
    trainable(images(56)).sum().backward()
    assert all(p.grad is not None for p in trainable.parameters())


def test_config_errors_name_the_key():
    with pytest.raises(ConfigError, match="'precision: fp16' needs 'freeze: true'"):
        EvaVisionTransformer.parse_config(vision_preset("eva_clip_g_tiny", precision="fp16", freeze=False))
    with pytest.raises(ConfigError, match="'precision' must be one of"):
        EvaVisionTransformer.parse_config(vision_preset("eva_clip_g_tiny", precision="fp8"))
    with pytest.raises(ConfigError, match="model.vision.dept.*Did you mean 'depth'"):
        EvaVisionTransformer.parse_config({**vision_preset("eva_clip_g_tiny"), "dept": 3})
    with pytest.raises(ConfigError, match="multiple of 'patch_size'"):
        EvaVisionTransformer.parse_config(vision_preset("eva_clip_g_tiny", image_size=60))
    with pytest.raises(ConfigError, match="divisible by 'heads'"):
        EvaVisionTransformer.parse_config(vision_preset("eva_clip_g_tiny", heads=3))


def test_wrong_image_shape_is_a_clear_error(make_encoder, images):
    with pytest.raises(ValueError, match=r"expects images of shape \(B, 3, 56, 56\).*got \(2, 3, 64, 64\)"):
        make_encoder("eva_clip_g_tiny")(images(64))


def test_dtype_and_trainable_properties(tiny_config):
    from lavis.models.llm.loading import DTYPES
    from lavis.models.vision.common import PRECISIONS

    assert PRECISIONS is DTYPES  # one precision table for the encoders and the LLM
    frozen = _build(tiny_config("eva_clip_g_tiny", precision="fp16"))
    assert frozen.dtype == torch.float16 and not frozen.trainable
    trainable = _build(tiny_config("eva_clip_g_tiny", freeze=False))
    assert trainable.dtype == torch.float32 and trainable.trainable


def test_cpu_runs_a_frozen_fp16_encoder_in_bf16_or_fp32():
    from lavis.models.vision.common import cpu_dtype

    assert cpu_dtype(torch.float16, bf16_instructions=True) == torch.bfloat16
    assert cpu_dtype(torch.float16, bf16_instructions=False) == torch.float32  # lossless fallback
    assert cpu_dtype(torch.bfloat16) == torch.bfloat16 and cpu_dtype(torch.float32) == torch.float32


@pytest.mark.parametrize("kind", ENCODERS)
def test_placing_a_frozen_fp16_encoder_on_cpu_switches_to_the_cpu_dtype(kind, tiny_config, images):
    from lavis.models.vision.common import cpu_dtype

    encoder = _build(tiny_config(kind, precision="fp16"))
    assert encoder.dtype == torch.float16  # as configured after construction: it may go to a GPU next
    parent = nn.ModuleDict({"visual_encoder": encoder, "head": nn.Linear(2, 2)}).to("cpu")
    assert parent["visual_encoder"].dtype == cpu_dtype(torch.float16) != torch.float16
    assert parent["head"].weight.dtype == torch.float32
    assert encoder(images(encoder.image_size)).dtype == cpu_dtype(torch.float16)
    assert encoder.float().dtype == torch.float32  # an explicit cast to another dtype is respected
    for precision in ("fp32", "bf16"):  # other precisions are left as configured
        other = _build(tiny_config(kind, precision=precision)).to("cpu")
        assert other.dtype == {"fp32": torch.float32, "bf16": torch.bfloat16}[precision]
    trainable = _build(tiny_config(kind, precision="fp32", freeze=False)).to("cpu")
    assert trainable.dtype == torch.float32 and trainable.trainable
