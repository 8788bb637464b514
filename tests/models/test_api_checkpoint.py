"""load_model / load_model_and_preprocess, the shipped YAMLs, and checkpoint loading (ours and LAVIS .pth)."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from lavis.common.errors import CheckpointError, ConfigError, WeightsNotFoundError
from lavis.models import MODELS, load_model, load_model_and_preprocess, model_config
from lavis.models.qformer import QFormerConfig


@pytest.mark.parametrize("arch", ["blip2", "blip2_t5", "blip2_t5_instruct", "blip2_vicuna_instruct", "blip2_llm"])
def test_every_shipped_yaml_validates(arch):
    for model_type in MODELS.get(arch).MODEL_TYPES:
        cfg = model_config(arch, model_type)
        assert cfg.arch == arch and cfg.model_type == model_type
        assert isinstance(cfg.qformer, QFormerConfig)
        assert set(cfg.preprocess) == {"vis_processor", "text_processor"}
        if model_type not in ("tiny", "demo"):  # the CPU-size types; the rest are full size
            assert cfg.qformer.hidden_size == 768 and cfg.qformer.num_query_tokens == 32
            assert cfg.vision["name"] == "eva_clip_g" and cfg.vision["precision"] == "fp16"
            assert cfg.checkpoint.startswith("https://storage.googleapis.com/sfr-vision-language-research/LAVIS/")


def test_config_typos_fail_naming_the_key():
    with pytest.raises(ConfigError, match="model.qformer.num_layer"):
        model_config("blip2", "tiny", {"qformer": {"num_layer": 3}})
    with pytest.raises(ConfigError, match=r"model\.llm.*dtype.*int8"):
        model_config("blip2_t5", "tiny", {"llm": {"dtype": "int8"}})
    with pytest.raises(ConfigError, match="no model_type 'xl'"):
        model_config("blip2", "xl")


def test_load_model_and_preprocess(tiny_overrides):
    model, vis, txt = load_model_and_preprocess("blip2_t5_instruct", "tiny", **tiny_overrides("blip2_t5_instruct"))
    assert not model.training
    assert set(vis) == {"train", "eval"} and set(txt) == {"train", "eval"}
    from PIL import Image

    image = vis["eval"](Image.new("RGB", (80, 64), (200, 120, 160)))
    assert tuple(image.shape) == (3, 56, 56)
    answers = model.generate({"image": image[None], "text_input": [txt["eval"]("Is there necrosis?")]}, max_new_tokens=3)
    assert len(answers) == 1


def test_missing_weights_say_what_to_download(minilm_dir):
    with pytest.raises(WeightsNotFoundError, match="huggingface-cli download"):
        load_model("blip2_t5", "tiny", qformer={"tokenizer": str(minilm_dir)}, llm={"name_or_path": "no-such/flan-t5"})


def test_our_checkpoint_round_trips_and_is_strict(build_tiny, tmp_path, make_batch):
    source = build_tiny("blip2_t5_instruct", seed=1)
    path = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in source.trainable_state_dict().items()}, str(path))
    target = build_tiny("blip2_t5_instruct", seed=1)  # same frozen parts (they come from their source)
    with torch.no_grad():
        for _, param in target.trainable_named_parameters():
            param.add_(torch.randn_like(param))
    report = target.load_checkpoint(str(path))
    assert not report.missing_trainable and not report.ignored and not report.loaded_frozen
    for name, param in target.trainable_named_parameters():
        assert torch.equal(param, source.state_dict()[name]), name
    source.eval()
    target.eval()
    batch = make_batch(2)
    torch.testing.assert_close(source(batch)["loss"], target(batch)["loss"])
    state = dict(source.trainable_state_dict())
    del state["t5_proj.weight"]
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    with pytest.raises(CheckpointError, match="t5_proj.weight"):
        target.load_checkpoint(str(path))


def test_lavis_pth_with_frozen_parts_and_stage1_heads(build_tiny, tmp_path):
    """A LAVIS stage-1 checkpoint loads into a stage-2 model with strict=False: Q-Former and
    queries load, ln_vision (trainable, as in LAVIS) loads, the stage-1 heads are reported as ignored."""
    stage1 = build_tiny("blip2", seed=3)
    state = dict(stage1.state_dict())
    state["ln_vision.weight"] = torch.full_like(state["ln_vision.weight"], 2.0)
    state["Qformer.bert.embeddings.position_ids"] = torch.arange(512)[None]  # LAVIS buffer
    path = tmp_path / "blip2_pretrained.pth"
    torch.save({"model": state, "config": {"note": "not weights"}}, path)
    stage2 = build_tiny("blip2_vicuna_instruct", seed=4)
    with pytest.raises(CheckpointError, match="llm_proj"):
        stage2.load_checkpoint(str(path))  # strict: the projection is not in a stage-1 file
    report = stage2.load_checkpoint(str(path), strict=False)
    assert report.missing_trainable == ["llm_proj.bias", "llm_proj.weight"]
    assert "ln_vision.weight" in report.loaded_trainable and (stage2.ln_vision.weight == 2.0).all()
    for ignored in ("Qformer.cls.predictions.bias", "vision_proj.weight", "itm_head.weight", "temp",
                    "Qformer.bert.embeddings.position_ids"):
        assert ignored in report.ignored
    assert torch.equal(stage2.query_tokens, stage1.query_tokens)
    assert torch.equal(stage2.Qformer.bert.encoder.layer[1].output_query.dense.weight,
                       stage1.Qformer.bert.encoder.layer[1].output_query.dense.weight)
    assert "ignored" in report.summary()


def test_init_checkpoint_from_config(tiny_overrides, build_tiny, tmp_path):
    stage1 = build_tiny("blip2", seed=5)
    path = tmp_path / "stage1.pth"
    torch.save({"model": stage1.state_dict()}, path)
    model = load_model("blip2_t5", "tiny", **tiny_overrides("blip2_t5", init_checkpoint=str(path)))
    assert torch.equal(model.query_tokens, stage1.query_tokens)


def test_corrupt_and_offline_checkpoints_are_clear_errors(build_tiny, tmp_path, monkeypatch):
    model = build_tiny("blip2")
    bad = tmp_path / "broken.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="broken.pth"):
        model.load_checkpoint(str(bad))
    monkeypatch.setenv("LAVIS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsNotFoundError, match="Download it to"):
        model.load_checkpoint("https://example.org/models/blip2_pretrained.pth")


def test_bert_is_read_only_without_a_checkpoint(build_tiny, minilm_dir, tmp_path):
    """MiniLM's 384-wide weights do not fit the tiny Q-Former: reading them is an error, so a
    model that builds proves BERT was skipped because the checkpoint replaces it anyway."""
    source = build_tiny("blip2_t5", seed=6)
    path = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in source.trainable_state_dict().items()}, str(path))
    with pytest.raises(CheckpointError, match="hidden_size=384"):
        build_tiny("blip2_t5", qformer={"pretrained": str(minilm_dir)})
    model = build_tiny("blip2_t5", qformer={"pretrained": str(minilm_dir)}, checkpoint=str(path))
    assert torch.equal(model.query_tokens, source.query_tokens)
