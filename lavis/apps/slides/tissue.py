"""Tissue detection on a low-resolution view of the slide, and each tile's share of tissue.

Algorithm (on a thumbnail of the analysed region, at most ``max_side`` pixels a side):

1. Optical density of the darkest channel, OD = -log10(I / 255) of min(R, G, B): glass is near 0,
   any stain raises it. The glass/tissue threshold is Otsu's on log(OD) (the glass peak is narrow
   and tissue spans a wide range, which a log scale balances), clamped to [0.04, 0.2]: a
   thumbnail that is nearly all tissue cannot push the cut into pale tissue, and one that is all
   glass cannot make scanner noise tissue.
2. Pen marks and dark debris are removed: pixels of green-to-blue hue (70-230 degrees) with
   saturation >= 0.25 (green, cyan and blue markers, tissue-marking dye), and near-black pixels
   (max channel < 40: black marker, folds of debris). H&E and DAB hues (purple, pink, red, brown)
   are outside that range. Red ink looks like eosin and is kept as tissue; pen lines crossing
   tissue leave gaps no wider than the line.
3. Specks smaller than ``min_object_um2`` are dropped, holes smaller than ``max_hole_um2``
   (lumens, fat cells, the gaps left by a thin pen line) are filled; larger holes and pen-circled
   glass stay out.

A tile's tissue share is the mean of the mask over the tile's box (mask pixels cut by the box
count in full); tiles with a share >= ``min_tissue`` are analysed.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
from PIL import Image

OD_CLAMP = (0.04, 0.2)


@dataclasses.dataclass(frozen=True)
class TissueSettings:
    max_side: int = 2048  # thumbnail size the mask is computed at
    min_tissue: float = 0.5  # share of a tile that must be tissue for it to be analysed
    min_object_um2: float = 2_000.0  # smaller specks are dropped (dust, a few loose cells; ~45 um across)
    max_hole_um2: float = 4_000.0  # smaller holes are filled (lumens, fat cells; ~70 um across)
    remove_pen: bool = True

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class TissueMask:
    """A boolean mask over the analysed region: mask[i, j] covers level-0 pixels from
    ``origin + (j, i) * downsample`` over one ``downsample`` step."""

    mask: np.ndarray  # (H, W) bool
    origin: tuple[int, int]  # level-0 (x, y) of the mask's top-left
    downsample: tuple[float, float]  # level-0 pixels per mask pixel (x, y)
    od_threshold: float
    pen_pixels: int

    @property
    def fraction(self) -> float:
        return float(self.mask.mean()) if self.mask.size else 0.0

    def describe(self) -> dict[str, Any]:
        return {
            "size": [int(self.mask.shape[1]), int(self.mask.shape[0])], "origin": list(self.origin),
            "downsample": list(self.downsample), "od_threshold": round(self.od_threshold, 4),
            "pen_pixels": int(self.pen_pixels), "tissue_fraction": round(self.fraction, 4),
        }

    def tile_fractions(self, origins: np.ndarray, size: int) -> np.ndarray:
        """Tissue share of each square tile (level-0 top-left ``origins`` (N, 2), side ``size``)."""
        integral = np.pad(self.mask.astype(np.int64).cumsum(0).cumsum(1), ((1, 0), (1, 0)))
        height, width = self.mask.shape
        dx, dy = self.downsample
        x = (origins[:, 0] - self.origin[0]) / dx
        y = (origins[:, 1] - self.origin[1]) / dy
        x0 = np.clip(np.floor(x).astype(np.int64), 0, width)
        y0 = np.clip(np.floor(y).astype(np.int64), 0, height)
        x1 = np.clip(np.ceil(x + size / dx).astype(np.int64), 0, width)
        y1 = np.clip(np.ceil(y + size / dy).astype(np.int64), 0, height)
        area = np.maximum((x1 - x0) * (y1 - y0), 1)
        inside = integral[y1, x1] - integral[y0, x1] - integral[y1, x0] + integral[y0, x0]
        return inside / area


def detect_tissue(
    thumbnail: Image.Image, origin: tuple[int, int], downsample: tuple[float, float], mpp: float,
    settings: TissueSettings = TissueSettings(),
) -> TissueMask:
    """The tissue mask of ``thumbnail`` (an RGB view whose pixel is ``downsample`` level-0 pixels of
    ``mpp`` microns, top-left at level-0 ``origin``)."""
    from skimage.filters import threshold_otsu

    rgb = np.asarray(thumbnail.convert("RGB")).astype(np.float32)
    od = optical_density(rgb)
    log_od = np.log(od + 1e-3)
    threshold = float(np.exp(threshold_otsu(log_od))) if np.ptp(log_od) > 0 else OD_CLAMP[1]
    threshold = float(np.clip(threshold, *OD_CLAMP))
    tissue = od > threshold
    pen = pen_marks(rgb) if settings.remove_pen else np.zeros_like(tissue)
    tissue &= ~pen
    pixel_um2 = (mpp * downsample[0]) * (mpp * downsample[1])
    min_object = max(1, int(round(settings.min_object_um2 / pixel_um2)))
    max_hole = max(1, int(round(settings.max_hole_um2 / pixel_um2)))
    tissue = _without_small_parts(tissue, min_object)
    tissue = ~_without_small_parts(~tissue, max_hole + 1)  # fill holes of at most max_hole pixels
    return TissueMask(tissue, origin, downsample, threshold, int(pen.sum()))


def optical_density(rgb: np.ndarray) -> np.ndarray:
    """Optical density of the darkest channel of an (H, W, 3) RGB array: glass near 0, stain above."""
    return -np.log10(np.clip(np.asarray(rgb, dtype=np.float32).min(axis=-1), 1.0, 255.0) / 255.0)


def _without_small_parts(mask: np.ndarray, min_pixels: int) -> np.ndarray:
    """``mask`` without its 8-connected parts of fewer than ``min_pixels`` pixels."""
    from scipy import ndimage

    labels, count = ndimage.label(mask, structure=np.ones((3, 3), dtype=bool))
    if count == 0:
        return mask
    keep = np.bincount(labels.ravel()) >= min_pixels
    keep[0] = False
    return keep[labels]


def pen_marks(rgb: np.ndarray) -> np.ndarray:
    """Green-to-blue marker ink and near-black pixels of an (H, W, 3) float RGB array in 0..255."""
    high, low = rgb.max(axis=-1), rgb.min(axis=-1)
    chroma = high - low
    saturation = np.where(high > 0, chroma / np.maximum(high, 1e-6), 0.0)
    hue = _hue_degrees(rgb, high, chroma)
    coloured = (hue >= 70) & (hue <= 230) & (saturation >= 0.25) & (high >= 40)
    return coloured | (high < 40)


def _hue_degrees(rgb: np.ndarray, high: np.ndarray, chroma: np.ndarray) -> np.ndarray:
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    safe = np.maximum(chroma, 1e-6)
    hue = np.where(high == r, ((g - b) / safe) % 6, np.where(high == g, (b - r) / safe + 2, (r - g) / safe + 4))
    return np.where(chroma > 0, hue * 60.0, -1.0)
