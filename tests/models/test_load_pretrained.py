"""load_pretrained: every kind of trained model loads to the same outputs as the model that was
saved, relative paths resolve from the run's own directory, and wrong kinds fail clearly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from PIL import Image

from lavis.common.checkpoint import link_last, save_checkpoint
from lavis.common.errors import CheckpointError, ConfigError
from lavis.common.provenance import provenance_metadata
from lavis.common.schema import to_dict
from lavis.models import load_pretrained
from lavis.models.provenance import describe_model


def _tile() -> Image.Image:
    generator = torch.Generator().manual_seed(3)
    pixels = (torch.rand(64, 64, 3, generator=generator) * 255).to(torch.uint8).numpy()
    return Image.fromarray(pixels)


def _answers(loaded, question: str = "is there necrosis in this image") -> tuple[list[str], torch.Tensor]:
    samples = {"image": loaded.vis_processor(_tile())[None], "text_input": [loaded.text_processor(question)]}
    return loaded.model.generate(samples, num_beams=2, max_new_tokens=5, min_new_tokens=1), \
        loaded.model.yes_no_probabilities(samples)


def _trained(build_tiny, folder: Path, arch: str = "blip2_t5_instruct"):
    """A tiny model whose trainable weights differ from a fresh build's (as after training) and
    whose frozen image encoder comes from a weights file, as a real one does (checkpoints hold
    only the trainable tensors)."""
    from safetensors.torch import save_file

    model = build_tiny(arch, seed=1)
    folder.mkdir(parents=True, exist_ok=True)
    vision = folder / "vision.safetensors"
    save_file({k: v.contiguous() for k, v in model.visual_encoder.state_dict().items()}, str(vision))
    model.cfg.vision["pretrained"] = str(vision)
    with torch.no_grad():
        for _, param in model.trainable_named_parameters():
            param.add_(0.05 * torch.randn_like(param))
    return model.eval()


def _write_run(run_dir: Path, model, launch_dir: Path, relative_llm: str | None = None, llm: str | None = None) -> Path:
    """A run folder as the runner writes it: config.yaml, run_info.json, checkpoints/step_N + last."""
    section = to_dict(model.cfg)
    if relative_llm is not None:
        section["llm"]["name_or_path"] = relative_llm
    if llm is not None:  # the run's config now names another LLM than the one it trained with
        section["llm"]["name_or_path"] = llm
    config = {"model": section, "datasets": {}, "run": {"task": "vqa", "generation": {"num_beams": 3}}}
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config))
    (run_dir / "run_info.json").write_text(json.dumps({"cwd": str(launch_dir)}))
    record = provenance_metadata(describe_model(model))  # what the runner stores with the weights
    step = save_checkpoint(run_dir / "checkpoints" / "step_7", model.trainable_state_dict(), {"step": 7}, record)
    link_last(run_dir / "checkpoints", step)
    return step


def test_run_checkpoint_and_run_folder_give_the_saved_model(build_tiny, tmp_path, monkeypatch, tiny_t5_dir):
    model = _trained(build_tiny, tmp_path / "weights")
    launch = tmp_path / "project"
    (launch / "weights").mkdir(parents=True)
    (launch / "weights" / "t5").symlink_to(tiny_t5_dir, target_is_directory=True)
    _write_run(launch / "runs" / "job", model, launch, relative_llm="weights/t5")
    monkeypatch.chdir(tmp_path)  # elsewhere: the relative LLM path must resolve from the run's cwd
    for path in (launch / "runs/job/checkpoints/last", launch / "runs/job"):
        loaded = load_pretrained(path)
        assert loaded.kind == "run" and loaded.name == "job/step_7" and not loaded.model.training
        assert loaded.generation == {"num_beams": 3}
        for name, param in model.trainable_named_parameters():
            assert torch.equal(dict(loaded.model.named_parameters())[name], param), name
        samples = {"image": loaded.vis_processor(_tile())[None], "text_input": ["is there necrosis in this image"]}
        expected = model.generate(samples, num_beams=2, max_new_tokens=5, min_new_tokens=1)
        assert _answers(loaded)[0] == expected


def test_converted_hf_and_weights_file_sources_agree(build_tiny, tmp_path, tiny_overrides):
    from lavis.models.interop import save_model_folder, to_hf

    model = _trained(build_tiny, tmp_path / "weights")
    run = load_pretrained(_write_run(tmp_path / "run", model, tmp_path))
    reference = _answers(run)
    samples = {"image": run.vis_processor(_tile())[None], "text_input": ["is there necrosis in this image"]}
    torch.testing.assert_close(model.yes_no_probabilities(samples), reference[1])

    save_model_folder(model, tmp_path / "converted")
    converted = load_pretrained(tmp_path / "converted")
    assert converted.kind == "folder"

    to_hf(model, tmp_path / "hf")
    hf = load_pretrained(tmp_path / "hf")
    assert hf.kind == "hf"

    torch.save({"model": model.state_dict()}, tmp_path / "clover.pth")  # a LAVIS-style .pth
    config = tmp_path / "model.yaml"
    config.write_text(yaml.safe_dump({"model": {"arch": "blip2_t5_instruct", "model_type": "tiny",
                                                **tiny_overrides("blip2_t5_instruct")}}))
    from_file = load_pretrained(tmp_path / "clover.pth", config=config)
    assert from_file.kind == "file"

    for other in (converted, hf, from_file):
        answers, probs = _answers(other)
        assert answers == reference[0], other.kind
        torch.testing.assert_close(probs, reference[1], atol=1e-4, rtol=1e-3)


def test_stage1_is_refused_for_answers_and_accepted_for_retrieval(build_tiny, tmp_path):
    step = _write_run(tmp_path / "stage1", _trained(build_tiny, tmp_path / "weights", "blip2"), tmp_path)
    with pytest.raises(CheckpointError, match=r"stage-1 model.*lavis\.slides --mode retrieval.*init_checkpoint"):
        load_pretrained(step)
    loaded = load_pretrained(step, require="retrieval")
    assert loaded.can_retrieve and not loaded.can_answer
    stage2 = _write_run(tmp_path / "stage2", _trained(build_tiny, tmp_path / "weights2"), tmp_path)
    with pytest.raises(CheckpointError, match="retrieval needs a stage-1 model"):
        load_pretrained(stage2, require="retrieval")


def test_precision_override_sets_the_frozen_parts(build_tiny, tmp_path):
    step = _write_run(tmp_path / "run", _trained(build_tiny, tmp_path / "weights"), tmp_path)
    loaded = load_pretrained(step, precision="bf16")
    assert {p.dtype for p in loaded.model.llm.parameters()} == {torch.bfloat16}
    assert {p.dtype for p in loaded.model.Qformer.parameters()} == {torch.float32}
    with pytest.raises(ConfigError, match="precision must be"):
        load_pretrained(step, precision="int4")


def test_bad_sources_fail_naming_what_was_expected(build_tiny, tmp_path):
    with pytest.raises(CheckpointError, match="no such file or folder"):
        load_pretrained(tmp_path / "nothing-here")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="is not a model folder"):
        load_pretrained(tmp_path / "empty")
    (tmp_path / "weights.safetensors").write_bytes(b"")
    with pytest.raises(ConfigError, match="holds weights, not the architecture"):
        load_pretrained(tmp_path / "weights.safetensors")
    model = build_tiny("blip2_t5_instruct")
    model.cfg.init_checkpoint = str(tmp_path / "stage1-deleted")
    step = _write_run(tmp_path / "run", model, tmp_path)
    with pytest.raises(CheckpointError, match="init_checkpoint.*stage1-deleted.*is missing"):
        load_pretrained(step)
    with pytest.raises(ConfigError, match="no CUDA GPU"):
        load_pretrained(step, device="cuda")


def test_a_checkpoint_trained_with_another_llm_is_refused(build_tiny, tmp_path):
    from lavis.models.llm.tiny import save_tiny_t5
    from tests.models.conftest import CORPUS

    other = save_tiny_t5(tmp_path / "other_t5", [line.upper() for line in CORPUS] * 5, vocab_size=128)
    step = _write_run(tmp_path / "run", _trained(build_tiny, tmp_path / "weights"), tmp_path, llm=str(other))
    with pytest.raises(CheckpointError, match=r"trained with other frozen parts.*llm\.tokenizer_sha256"):
        load_pretrained(step)
    assert load_pretrained(step, check_provenance=False).model.cfg.llm.name_or_path == str(other)
