"""The demo's tiles: separate regions per split, labels measured from pixels, the held-out region."""

import itertools

import numpy as np
import pytest

from lavis.datasets.demo import tiles
from lavis.datasets.demo.tiles import (
    SOURCES,
    WindowMeasure,
    asks_magnification,
    heldout_region,
    labels_for,
    load_ihc,
    measure,
)

SIZES = {"cmu1_he": (2967, 2220), "skimage_ihc": (512, 512)}  # (height, width)


def _pixels(box, height, width):
    top, bottom, left, right = box
    return int(top * height), int(bottom * height), int(left * width), int(right * width)


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_splits_come_from_disjoint_regions(name):
    height, width = SIZES[name]
    boxes = [(split, box) for split, group in SOURCES[name].regions.items() for box in group]
    assert {split for split, _ in boxes} == {"train", "val", "test"}
    for (split_a, a), (split_b, b) in itertools.combinations(boxes, 2):
        if split_a == split_b:
            continue
        a, b = _pixels(a, height, width), _pixels(b, height, width)
        overlap_y = min(a[1], b[1]) - max(a[0], b[0])
        overlap_x = min(a[3], b[3]) - max(a[2], b[2])
        assert overlap_y <= 0 or overlap_x <= 0, (name, split_a, split_b)
    for _, box in boxes:  # every window lies inside its own box, so no pixel is shared
        top, bottom, left, right = _pixels(box, height, width)
        for field in SOURCES[name].fields:
            for y, x in tiles.windows(height, width, field.size, field.stride, box):
                assert top <= y and y + field.size <= bottom and left <= x and x + field.size <= right


def test_window_measure_equals_measuring_the_crop():
    image = load_ihc()
    windows = WindowMeasure(image)
    for y, x, size in [(0, 0, 64), (300, 120, 64), (17, 250, 128), (448, 448, 64)]:
        direct, fast = measure(image[y : y + size, x : x + size]), windows(y, x, size)
        assert fast == pytest.approx(direct, rel=1e-9, abs=1e-12)


def test_labels_follow_the_bands():
    he = {"fraction": 0.9, "hematoxylin": 0.08, "dab": 0.0}
    assert labels_for(he, "H&E", "low") == {"stain": "H&E", "magnification": "low", "tissue_fraction": "large",
                                            "tissue_density": "dense"}
    assert "tissue_density" not in labels_for({**he, "hematoxylin": 0.055}, "H&E", "low")  # inside the band
    glass = labels_for({"fraction": 0.02, "hematoxylin": 0.0, "dab": 0.0}, "H&E", "high")
    assert glass == {"stain": "H&E", "tissue_fraction": "small"}  # no power can be read from empty glass
    ihc = {"fraction": 0.95, "hematoxylin": 0.02}
    assert labels_for({**ihc, "dab": 0.1}, "IHC", "high")["dab_staining"] == "negative"
    assert labels_for({**ihc, "dab": 0.6}, "IHC", "high")["dab_staining"] == "positive"
    assert "dab_staining" not in labels_for({**ihc, "dab": 0.3}, "IHC", "high")


def test_heldout_region_is_the_test_box_of_the_slide():
    import openslide

    region = heldout_region()
    slide = openslide.OpenSlide(str(region.slide))
    try:
        width, height = slide.dimensions
        x, y, w, h = region.box
        assert 0 <= x and 0 <= y and x + w <= width and y + h <= height and w > 512 and h > 512
        assert region.box == (0, int(0.62 * height), width, height - int(0.62 * height))
        for split in ("train", "val"):  # nothing trained or validated on lies inside it
            for _, bottom, _, _ in SOURCES["cmu1_he"].regions[split]:
                assert int(bottom * height) <= y
        corner = np.asarray(slide.read_region((x, y), 0, (64, 64)).convert("RGB"))
        assert corner.shape == (64, 64, 3)
    finally:
        slide.close()


def test_small_samples_still_cover_every_label():
    """Quick runs keep 48 tiles per split: every attribute and both its answers must remain."""
    from types import SimpleNamespace

    from lavis.datasets.demo.build import sample_covering

    common = [SimpleNamespace(labels={"stain": "H&E"}) for _ in range(500)]
    rare = [SimpleNamespace(labels={"stain": "IHC", "dab_staining": v}) for v in ("positive", "negative") for _ in range(3)]
    picked = sample_covering(common + rare, 12, seed=0)
    assert len(picked) == 12 and len({id(t) for t in picked}) == 12
    assert {t.labels.get("dab_staining") for t in picked} >= {"positive", "negative"}


def test_magnification_is_asked_only_where_the_stain_cannot_answer_it():
    """IHC comes at one power only: asking it there would let the stain answer the question."""
    assert asks_magnification(SOURCES["cmu1_he"]) and not asks_magnification(SOURCES["skimage_ihc"])
    ihc = {"fraction": 0.9, "hematoxylin": 0.05, "dab": 0.6}
    assert "magnification" not in labels_for(ihc, "IHC", None)
    assert labels_for(ihc, "H&E", "high")["magnification"] == "high"


def test_magnification_is_a_label_only_when_asked_for():
    from lavis.datasets.demo.tiles import extract_tiles

    assert not any("magnification" in t.labels for t in extract_tiles())
    asked = [t for t in extract_tiles(ask_magnification=True) if "magnification" in t.labels]
    assert asked and {t.source for t in asked} == {"cmu1_he"}
    assert {t.labels["magnification"] for t in asked} == {"high", "low"}
