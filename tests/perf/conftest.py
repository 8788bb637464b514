"""Fixtures for the feature-cache and benchmark-logic tests: real image files, a tiny model built
from the benchmark size table (random weights, tokenizers made offline), run YAMLs."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch
import yaml
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # the benchmarks package lives at the repo root, beside lavis/
    sys.path.insert(0, str(REPO))

QUESTIONS = ["is there necrosis in this image", "describe the image in detail", "what type of cells are seen"]
ANSWERS = ["yes", "the tissue shows glands lined by columnar epithelium", "lymphocytes infiltrate the stroma"]


@pytest.fixture(scope="session")
def assets(tmp_path_factory):
    from benchmarks.sizes import make_assets

    return make_assets(tmp_path_factory.mktemp("assets"))


@pytest.fixture(scope="session")
def tiny_model(assets):
    """Our tiny InstructBLIP-T5 (the classes of the full model), in eval mode."""
    from benchmarks.sizes import SIZES, build_ours

    torch.manual_seed(0)
    return build_ours(SIZES["tiny"], assets).eval()


def _write_images(folder: Path, count: int, seed: int = 0, size: tuple[int, int] = (72, 80)) -> list[str]:
    """``count`` random RGB images (PNG and JPEG alternately); returns their names."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    names = []
    for i in range(count):
        name = f"img{i:03d}.{'png' if i % 2 else 'jpg'}"
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(folder / name)
        names.append(name)
    return names


@pytest.fixture
def image_table(tmp_path):
    """``image_table(paths, processor)``: a SampleTable over images in ``tmp_path / "images"``."""
    from lavis.datasets.datasets.sample_table import SampleTable

    def make(paths: list[str], processor, text_processor=None) -> SampleTable:
        table = pa.table({
            "image_path": paths,
            "text_input": [QUESTIONS[i % 3] for i in range(len(paths))],
            "image_id": list(range(len(paths))),
        })
        return SampleTable(table, tmp_path / "images", vis_processor=processor, text_processor=text_processor)

    return make


@pytest.fixture(scope="session")
def write_images():
    """``write_images(folder, count, seed=0, size=(72, 80))`` -> names of real PNG/JPEG files."""
    return _write_images


@pytest.fixture(scope="session")
def eval_processor():
    """``eval_processor(image_size=56, **options)``: a pathology_image_eval processor."""
    from lavis.processors.image_processors import PathologyImageEval

    def make(image_size: int = 56, **extra):
        return PathologyImageEval.from_config({"name": "pathology_image_eval", "image_size": image_size, **extra})

    return make


# ---- end-to-end: a LLaVA-Med style data set and a run YAML for the real entry points --------------
@pytest.fixture(scope="session")
def tiny_t5_folder(tmp_path_factory) -> Path:
    from lavis.models.llm.tiny import save_tiny_t5

    return save_tiny_t5(tmp_path_factory.mktemp("t5"), (QUESTIONS + ANSWERS) * 5, vocab_size=128)


@pytest.fixture
def llava_storage(tmp_path) -> Path:
    """``images/`` plus ``train.json`` (12 pairs over 8 images) and ``val.json`` (4 pairs)."""
    root = tmp_path / "data"
    names = _write_images(root / "images", 10)

    def records(images: list[str], offset: int) -> list[dict]:
        return [
            {"id": f"r{offset + i}", "image": image, "conversations": [
                {"from": "human", "value": f"<image>\n{QUESTIONS[i % 3]}"},
                {"from": "gpt", "value": ANSWERS[i % 3]},
            ]}
            for i, image in enumerate(images)
        ]

    (root / "train.json").write_text(json.dumps(records(names[:8] + names[:4], 0)))
    (root / "val.json").write_text(json.dumps(records(names[8:] + names[8:], 100)))
    return root


@pytest.fixture
def run_yaml(tmp_path, llava_storage, tiny_t5_folder, assets):
    """``run_yaml(name, **run_keys)`` -> path of a stage-2 run config on the tiny model."""

    def make(name: str, train_processor: str = "pathology_image_eval", **run) -> Path:
        cfg = {
            "model": {
                "arch": "blip2_t5_instruct", "model_type": "tiny",
                "qformer": {"tokenizer": str(assets.qformer_tokenizer)},
                "llm": {"name_or_path": str(tiny_t5_folder)},
            },
            "datasets": {"llava_med": {
                "storage": str(llava_storage), "files": {"train": "train.json", "val": "val.json"},
                "vis_processor": {"train": {"name": train_processor, "image_size": 56},
                                  "eval": {"name": "pathology_image_eval", "image_size": 56}},
            }},
            "run": {
                "task": "instruction_tuning", "output_dir": str(tmp_path / name), "device": "cpu",
                "num_workers": 0, "progress_bar": False, "batch_size_train": 4, "batch_size_eval": 4,
                "init_lr": 1e-3, "log_freq": 1, "max_epoch": 2, "valid_splits": ["val"], "seed": 3,
                "feature_cache_dir": str(tmp_path / "cache"), **run,
            },
        }
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(cfg))
        return path

    return make
