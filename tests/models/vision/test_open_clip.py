"""open_clip encoder: registered, folder and hf-hub model names; tokens equal open_clip's own."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from lavis.common.errors import ConfigError, WeightsNotFoundError
from lavis.models.vision.open_clip_encoder import OpenClipVisionEncoder, open_clip_weights_source


def _build(**cfg):
    return OpenClipVisionEncoder.from_config({"name": "open_clip", "image_size": 32, **cfg})


def test_registered_config_tokens_match_open_clip(tiny_open_clip, images, open_clip_tokens):
    name, model, folder = tiny_open_clip
    x = images(32)
    penultimate = _build(model_name=name, pretrained=str(folder / "open_clip_pytorch_model.bin"))
    assert (penultimate.num_tokens, penultimate.num_features) == (1 + 4 * 4, 32)
    assert len(penultimate.transformer.resblocks) == 2  # default layer -2 of 3 blocks
    assert torch.allclose(penultimate(x), open_clip_tokens(model.visual, x, 1), atol=1e-5)

    last = _build(model_name=name, pretrained=str(folder), layer=-1)
    assert torch.allclose(last(x), open_clip_tokens(model.visual, x, 2), atol=1e-5)


def test_local_folder_as_model_name(tiny_open_clip, images, open_clip_tokens):
    _, model, folder = tiny_open_clip
    x = images(32)
    for model_name in (str(folder), f"local-dir:{folder}"):
        encoder = _build(model_name=model_name, pretrained=str(folder))
        assert torch.allclose(encoder(x), open_clip_tokens(model.visual, x, 1), atol=1e-5)


def _fill_hub_cache(cache, repo: str, files) -> None:
    """Lay files out as huggingface_hub's cache does: refs/main -> snapshots/<commit>/."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo_dir = cache / f"models--{repo.replace('/', '--')}"
    (repo_dir / "refs").mkdir(parents=True)
    (repo_dir / "refs" / "main").write_text(commit)
    snapshot = repo_dir / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for path in files:
        shutil.copy(path, snapshot / path.name)


def test_hf_hub_id_resolves_from_the_local_cache_offline(tiny_open_clip, images, open_clip_tokens, tmp_path, monkeypatch):
    import huggingface_hub.constants

    _, model, folder = tiny_open_clip
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    _fill_hub_cache(tmp_path, "lavis-test/QuiltNet-Tiny", sorted(folder.iterdir()))
    hub_id = "hf-hub:lavis-test/QuiltNet-Tiny"
    encoder = _build(model_name=hub_id, pretrained=hub_id)
    x = images(32)
    assert torch.allclose(encoder(x), open_clip_tokens(model.visual, x, 1), atol=1e-5)

    with pytest.raises(WeightsNotFoundError, match="wisdomik/QuiltNet-B-32") as err:
        _build(model_name="hf-hub:wisdomik/QuiltNet-B-32")
    assert "hf download" in str(err.value)


def test_bad_model_names_and_layers_fail_clearly(tiny_open_clip, tmp_path):
    name, _, _ = tiny_open_clip
    with pytest.raises(ConfigError, match="model_name"):
        OpenClipVisionEncoder.parse_config({"name": "open_clip"})
    with pytest.raises(ConfigError, match="unknown open_clip model 'ViT-B-322'.*ViT-B-32"):
        _build(model_name="ViT-B-322")
    with pytest.raises(ConfigError, match="3-block"):
        _build(model_name=name, layer=3)
    timm_tower = tmp_path / "biomedclip"
    timm_tower.mkdir()
    config = {"embed_dim": 16, "vision_cfg": {"timm_model_name": "vit_base_patch16_224"}, "text_cfg": {}}
    (timm_tower / "open_clip_config.json").write_text(json.dumps({"model_cfg": config}))
    with pytest.raises(ConfigError, match="timm or ResNet"):
        _build(model_name=str(timm_tower))


def test_pretrained_tags_map_to_their_hub_repo(tiny_open_clip):
    name, _, folder = tiny_open_clip
    assert open_clip_weights_source("ViT-B-32", "openai") == ("timm/vit_base_patch32_clip_224.openai", True)
    assert open_clip_weights_source("ViT-B-32", str(folder)) == (str(folder), None)
    with pytest.raises(WeightsNotFoundError, match="no file or folder at 'openai'"):
        _build(model_name=name, pretrained="openai")  # no such tag for the tiny model
