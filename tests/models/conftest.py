"""Tiny BLIP-2 family fixtures: real classes at test size, a tiny T5 and LLaMA saved on the fly."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

CORPUS = [
    "the tissue shows glands lined by columnar epithelium with crowded nuclei",
    "is there necrosis in this image",
    "yes",
    "no",
    "describe the image in detail",
    "lymphocytes infiltrate the stroma around the tumor nests",
    "the epidermis is thickened with keratin pearls",
    "mitotic figures are frequent and nuclei are pleomorphic",
    "what type of cells are seen",
    "fibrous stroma with scattered inflammatory cells",
]


@pytest.fixture(scope="session")
def tiny_t5_dir(tmp_path_factory) -> Path:
    from lavis.models.llm.tiny import save_tiny_t5

    return save_tiny_t5(tmp_path_factory.mktemp("tiny_t5"), CORPUS * 5, vocab_size=128)


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory) -> Path:
    from lavis.models.llm.tiny import save_tiny_llama

    return save_tiny_llama(tmp_path_factory.mktemp("tiny_llama"), CORPUS * 5, vocab_size=128)


@pytest.fixture(scope="session")
def tiny_gpt2_dir(tmp_path_factory) -> Path:
    from lavis.models.llm.tiny import save_tiny_gpt2

    return save_tiny_gpt2(tmp_path_factory.mktemp("tiny_gpt2"), CORPUS * 5)


@pytest.fixture(scope="session")
def tiny_overrides(minilm_dir, tiny_t5_dir, tiny_llama_dir, request):
    """Config overrides that point the tiny YAMLs at local files (per arch)."""

    def overrides(arch: str, **extra) -> dict:
        out = {"qformer": {"tokenizer": str(minilm_dir)}}
        if arch in ("blip2_t5", "blip2_t5_instruct"):
            out["llm"] = {"name_or_path": str(tiny_t5_dir)}
        elif arch in ("blip2_vicuna_instruct", "blip2_llm"):
            out["llm"] = {"name_or_path": str(tiny_llama_dir)}
        elif arch == "blip2_biomed_instruct":  # built only by the tests that use it
            out["llm"] = {"name_or_path": str(request.getfixturevalue("tiny_gpt2_dir"))}
        for key, value in extra.items():
            out[key] = {**out.get(key, {}), **value} if isinstance(value, dict) else value
        return out

    return overrides


@pytest.fixture(scope="session")
def build_tiny(tiny_overrides):
    """``build_tiny(arch, seed=0, **overrides)`` -> a fresh tiny model (deterministic init)."""
    from lavis.models import load_model

    def build(arch: str, seed: int = 0, **extra):
        torch.manual_seed(seed)
        return load_model(arch, "tiny", **tiny_overrides(arch, **extra))

    return build


def _make_batch(batch: int = 3, image_size: int = 56, seed: int = 0) -> dict:
    generator = torch.Generator().manual_seed(seed)
    questions = ["is there necrosis in this image", "describe the image in detail", "what type of cells are seen"]
    answers = ["yes", "the tissue shows glands lined by columnar epithelium", "lymphocytes infiltrate the stroma"]
    return {
        "image": torch.randn(batch, 3, image_size, image_size, generator=generator),
        "text_input": [questions[i % 3] for i in range(batch)],
        "text_output": [answers[i % 3] for i in range(batch)],
        "image_id": torch.arange(batch),
    }


@pytest.fixture(scope="session")
def make_batch():
    """``make_batch(batch=3, image_size=56, seed=0)``: images, questions, answers, image ids."""
    return _make_batch
