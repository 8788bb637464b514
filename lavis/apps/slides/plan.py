"""Where the tiles are and how each one is read: the pyramid level, the read size, the grid.

The wanted resolution is ``--mpp`` (microns per pixel given to the model) or ``--magnification``
(converted with the 10 / power convention: 20x = 0.5 um/px). Its downsample from level 0 picks
the level: the coarsest one still at least as fine as wanted, so reads are only ever resized
down. A level within 3% of the wanted downsample is used as it is (scanners write 0.2527 for a
0.25 um/px scan). A wanted resolution finer than level 0 is refused (no upsampling).

Tiles lie fully inside the analysed region (the whole slide unless ``--region``); partial tiles
at the right and bottom edges are not analysed. Coordinates are level-0 pixels throughout.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from lavis.apps.slides.reader import MICRONS_AT_1X, SlideInfo
from lavis.common.errors import ConfigError, DataError

SNAP = 0.03  # a level within 3% of the wanted downsample is read without resizing


@dataclasses.dataclass(frozen=True)
class ReadPlan:
    """How every tile of the grid is read."""

    level: int  # pyramid level read
    level_downsample: float  # its downsample from level 0
    tile: int  # tile side given to the model's image processor (pixels)
    read_size: int  # pixels read at ``level`` per tile side (>= tile; resized down to ``tile``)
    tile_level0: int  # tile side in level-0 pixels
    stride_level0: int  # level-0 pixels between neighbouring tile origins
    mpp: float  # microns per tile pixel actually obtained
    region: tuple[int, int, int, int]  # analysed level-0 box (x, y, w, h)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def wanted_mpp(mpp: float | None, magnification: float | None) -> float:
    if mpp is not None and magnification is not None:
        raise ConfigError("give --mpp or --magnification, not both")
    if magnification is not None:
        if not magnification > 0:
            raise ConfigError(f"--magnification must be > 0, got {magnification}")
        return MICRONS_AT_1X / magnification
    value = 0.5 if mpp is None else mpp
    if not value > 0:
        raise ConfigError(f"--mpp must be > 0 microns per pixel, got {value}")
    return value


def plan_reads(
    info: SlideInfo,
    tile: int,
    stride: int | None = None,
    mpp: float | None = None,
    magnification: float | None = None,
    region: tuple[int, int, int, int] | None = None,
) -> ReadPlan:
    """The read plan for tiles of ``tile`` pixels every ``stride`` pixels (default: ``tile``, no
    overlap) at the wanted resolution (default 0.5 um/px)."""
    if tile < 8:
        raise ConfigError(f"--tile must be at least 8 pixels, got {tile}")
    stride = tile if stride is None else stride
    if not 0 < stride:
        raise ConfigError(f"--stride must be > 0 pixels, got {stride}")
    target = wanted_mpp(mpp, magnification)
    slide_mpp = require_resolution(info)
    downsample = target / slide_mpp
    if downsample < 1 - SNAP:
        raise ConfigError(
            f"slide '{info.path}' is scanned at {info.mpp:.4g} um/px ({info.mpp_source}); {target:.4g} um/px would "
            f"need upsampling: pass --mpp {info.mpp:.4g} or coarser (or --magnification "
            f"{MICRONS_AT_1X / info.mpp:.3g} or lower)"
        )
    for value in info.level_downsamples:
        if abs(value / downsample - 1) <= SNAP:
            downsample = value  # read that level as it is
            break
    downsample = max(downsample, 1.0)
    level = max(i for i, value in enumerate(info.level_downsamples) if value <= downsample * (1 + 1e-9))
    level_ds = info.level_downsamples[level]
    read_size = max(tile, round(tile * downsample / level_ds))
    tile_level0 = round(read_size * level_ds)
    stride_level0 = max(1, round(stride * read_size / tile * level_ds))
    box = _region(info, region)
    if box[2] < tile_level0 or box[3] < tile_level0:
        raise ConfigError(
            f"the analysed area ({box[2]}x{box[3]} level-0 pixels) is smaller than one tile ({tile_level0} level-0 "
            f"pixels = {tile} px at {target:.4g} um/px): use a smaller --tile or a coarser --mpp"
        )
    return ReadPlan(level, level_ds, tile, read_size, tile_level0, stride_level0,
                    info.mpp * tile_level0 / tile, box)


def require_resolution(info: SlideInfo) -> float:
    """The slide's level-0 microns per pixel, or the error saying what to pass."""
    if info.mpp is None:
        raise DataError(
            f"slide '{info.path}' records neither microns per pixel nor objective power, so --mpp/--magnification "
            "cannot be matched to it: pass --slide-mpp with the scan's microns per pixel at full resolution "
            "(e.g. --slide-mpp 0.25 for a 40x scan, 0.5 for 20x)"
        )
    return info.mpp


def _region(info: SlideInfo, region: tuple[int, int, int, int] | None) -> tuple[int, int, int, int]:
    width, height = info.dimensions
    if region is None:
        return (0, 0, width, height)
    x, y, w, h = (int(v) for v in region)
    if w <= 0 or h <= 0 or x < 0 or y < 0 or x + w > width or y + h > height:
        raise ConfigError(f"--region {x},{y},{w},{h} is not inside the slide's level 0 (0,0 to {width}x{height})")
    return (x, y, w, h)


def grid_origins(plan: ReadPlan) -> np.ndarray:
    """(N, 2) int64 level-0 top-left corners (x, y) of every tile in the region, row by row."""
    x0, y0, w, h = plan.region
    xs = np.arange(x0, x0 + w - plan.tile_level0 + 1, plan.stride_level0, dtype=np.int64)
    ys = np.arange(y0, y0 + h - plan.tile_level0 + 1, plan.stride_level0, dtype=np.int64)
    yy, xx = np.meshgrid(ys, xs, indexing="ij")
    return np.stack([xx.ravel(), yy.ravel()], axis=1)


def parse_region(text: str | None) -> tuple[int, int, int, int] | None:
    """``"x,y,w,h"`` (level-0 pixels) -> a tuple; None passes."""
    if text is None:
        return None
    parts = text.replace(" ", "").split(",")
    try:
        values = tuple(int(p) for p in parts)
    except ValueError:
        values = ()
    if len(values) != 4:
        raise ConfigError(f"--region must be x,y,width,height in level-0 pixels, got {text!r}")
    return values  # type: ignore[return-value]
