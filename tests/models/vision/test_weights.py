"""Weight sources (file, folder, shards, URL cache, Hub cache), clear errors, and the presets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from lavis.common.errors import CheckpointError, ConfigError, WeightsNotFoundError
from lavis.common.paths import config_root
from lavis.models.vision.base import VISION_ENCODERS
from lavis.models.vision.eva_vit import EVA_VIT_G_URL
from lavis.models.vision.pos_embed import resize_pos_embed
from lavis.models.vision.presets import vision_preset
from lavis.models.vision.weights import load_into, read_state_dict


def test_missing_local_file_names_what_to_download(make_encoder):
    with pytest.raises(WeightsNotFoundError) as err:
        make_encoder("eva_clip_g_tiny", pretrained="/no/such/dir/eva_vit_g.pth")
    assert "/no/such/dir/eva_vit_g.pth" in str(err.value) and EVA_VIT_G_URL in str(err.value)


def test_url_is_read_from_the_cache_and_never_fetched_offline(make_encoder, images, tmp_path, monkeypatch):
    monkeypatch.setenv("LAVIS_CACHE_DIR", str(tmp_path))
    with pytest.raises(WeightsNotFoundError, match="offline") as err:
        make_encoder("eva_clip_g_tiny", pretrained=EVA_VIT_G_URL)
    cached = tmp_path / "eva_vit_g.pth"
    assert str(cached) in str(err.value)

    source = make_encoder("eva_clip_g_tiny")
    torch.save(source.state_dict(), cached)  # as if downloaded by hand to the path the error gave
    loaded = make_encoder("eva_clip_g_tiny", pretrained=EVA_VIT_G_URL)
    x = images(56)
    assert torch.equal(loaded(x), source(x))


def test_hub_id_not_in_cache_fails_offline(make_encoder, tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(WeightsNotFoundError, match="Salesforce/blip2-flan-t5-xl.*local Hub cache"):
        make_encoder("eva_clip_g_tiny", pretrained="Salesforce/blip2-flan-t5-xl")


def test_sharded_checkpoint_reads_only_the_vision_shards(make_encoder, images, tmp_path):
    source = make_encoder("eva_clip_g_tiny")
    vision = {f"visual_encoder.{k}": v.contiguous() for k, v in source.state_dict().items()}
    save_file(vision, str(tmp_path / "model-00001-of-00002.safetensors"))
    (tmp_path / "model-00002-of-00002.safetensors").write_bytes(b"not a safetensors file: must not be read")
    weight_map = {k: "model-00001-of-00002.safetensors" for k in vision}
    weight_map["t5_model.shared.weight"] = "model-00002-of-00002.safetensors"
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    loaded = make_encoder("eva_clip_g_tiny", pretrained=str(tmp_path))
    x = images(56)
    assert torch.equal(loaded(x), source(x))


def test_read_state_dict_unwraps_containers_and_rejects_junk(tmp_path):
    weight = torch.arange(4.0)
    torch.save({"model": {"module.a": weight}, "epoch": 3}, tmp_path / "ckpt.pth")
    assert read_state_dict(tmp_path / "ckpt.pth").keys() == {"a"}
    torch.save([weight], tmp_path / "list.pth")
    with pytest.raises(CheckpointError, match="list.pth.*does not hold a state dict"):
        read_state_dict(tmp_path / "list.pth")
    (tmp_path / "broken.bin").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="cannot read .*broken.bin"):
        read_state_dict(tmp_path / "broken.bin")


def test_load_into_names_missing_and_misshapen_keys(make_encoder):
    encoder = make_encoder("eva_clip_g_tiny")
    state = dict(encoder.state_dict())
    del state["blocks.1.attn.q_bias"]
    with pytest.raises(CheckpointError, match="1 weights .* missing: blocks.1.attn.q_bias"):
        load_into(encoder, state, "test.pth")
    state["blocks.1.attn.q_bias"] = torch.zeros(7)
    with pytest.raises(CheckpointError, match=r"'blocks.1.attn.q_bias' has shape \(7,\).*\(32,\)"):
        load_into(encoder, state, "test.pth")


def test_resize_pos_embed_keeps_same_grid_and_rejects_non_square():
    pos = torch.randn(1, 17, 8)
    assert resize_pos_embed(pos, (4, 4)) is pos
    assert resize_pos_embed(pos[0], (2, 2)).shape == (5, 8)
    with pytest.raises(CheckpointError, match="not a square grid"):
        resize_pos_embed(torch.randn(1, 16, 8), (4, 4))


def test_every_preset_is_a_valid_encoder_config():
    names = sorted(p.stem for p in (Path(config_root()) / "models" / "vision").glob("*.yaml"))
    assert {"eva_clip_g", "eva_clip_g_tiny", "clip_L", "clip_L_tiny", "quiltnet_b32", "quiltnet_b16", "plip"} <= set(names)
    for name in names:
        cfg = vision_preset(name)
        parsed = VISION_ENCODERS.get(cfg["name"]).parse_config(cfg)
        assert parsed.name == cfg["name"]
    with pytest.raises(ConfigError, match="unknown vision preset 'eva'.*eva_clip_g"):
        vision_preset("eva")
