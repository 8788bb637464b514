"""HF CLIP (PLIP) encoder: a saved CLIPModel folder round trip, layer choice, another image size."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from lavis.common.errors import ConfigError, WeightsNotFoundError
from lavis.models.vision.hf_clip import HFClipVisionEncoder


def _build(**cfg):
    return HFClipVisionEncoder.from_config({"name": "hf_clip", "image_size": 32, **cfg})


def _reference(model, x: torch.Tensor, **kwargs):
    with torch.no_grad():
        return model.vision_model(pixel_values=x, output_hidden_states=True, **kwargs).hidden_states


def test_plip_layout_folder_round_trip(tiny_plip, images):
    model, folder = tiny_plip
    x = images(32)
    hidden = _reference(model, x)
    encoder = _build(pretrained=str(folder))
    tokens = encoder(x)
    assert tokens.shape == (2, 17, 32) and (encoder.num_tokens, encoder.num_features) == (17, 32)
    assert torch.allclose(tokens, hidden[-2], atol=1e-5)  # last-but-one block, no final norm
    assert torch.allclose(_build(pretrained=str(folder), layer=-1)(x), hidden[-1], atol=1e-5)
    assert not any("post_layernorm" in k for k in encoder.state_dict())


def test_other_image_size_interpolates_positions(tiny_plip, images):
    model, folder = tiny_plip
    x = images(48)
    encoder = _build(pretrained=str(folder), image_size=48)
    assert encoder.num_tokens == 1 + 36
    assert torch.allclose(encoder(x), _reference(model, x, interpolate_pos_encoding=True)[-2], atol=1e-5)


def test_missing_weights_and_config_fail_clearly(tmp_path):
    with pytest.raises(WeightsNotFoundError, match="vinid/plip"):
        _build(pretrained=str(tmp_path / "plip"))
    with pytest.raises(WeightsNotFoundError, match="could not be loaded"):
        _build(pretrained="lavis-test/not-cached-plip")  # offline, not in the Hub cache
    with pytest.raises(ConfigError, match="'pretrained' is required"):
        HFClipVisionEncoder.parse_config({"name": "hf_clip"})
    cleared = dataclasses.replace(HFClipVisionEncoder.parse_config({"name": "hf_clip", "pretrained": "x/y"}), pretrained=None)
    with pytest.raises(ConfigError, match="needs 'pretrained'"):
        HFClipVisionEncoder.from_config(cleared)
