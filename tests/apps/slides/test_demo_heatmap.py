"""The demo's slide step: the held-out region only, and the agreement measure (a score equal to
the measured density must agree perfectly; one against it, perfectly badly)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from lavis.apps.slides.demo import demo_slide_heatmap, density_agreement, high_field
from lavis.apps.slides.reader import open_slide
from lavis.datasets.demo.tiles import heldout_region


def test_held_out_region_is_below_the_validation_band(svs_path):
    from lavis.datasets.demo.tiles import SOURCES

    x, y, w, h = heldout_region().box
    (_, val_bottom, _, _), = SOURCES["cmu1_he"].regions["val"]
    assert (x, w) == (0, 2220) and y > val_bottom * 2967 and y + h == 2967


def test_agreement_measure_on_real_tiles(svs_path):
    from lavis.datasets.demo.tiles import measure

    reader = open_slide(svs_path)
    x0, y0, w, h = heldout_region().box
    origins = [(x, y) for y in range(y0, y0 + h - 128, 128) for x in range(x0, x0 + w - 128, 128)]
    density = [measure(np.asarray(reader.read(0, x, y, 128, 128)))["hematoxylin"] for x, y in origins]
    table = pd.DataFrame({"x": [o[0] for o in origins], "y": [o[1] for o in origins], "size": 128,
                          "score": density})
    perfect = density_agreement(table, reader)
    assert perfect["dense"] > 3 and perfect["loose"] > 3
    assert perfect["auc_dense_vs_loose"] == 1.0 and perfect["spearman_vs_hematoxylin"] == pytest.approx(1.0)
    table["score"] = -table["score"]
    inverse = density_agreement(table, reader)
    assert inverse["auc_dense_vs_loose"] == 0.0 and inverse["spearman_vs_hematoxylin"] == pytest.approx(-1.0)


def test_demo_heatmap_plumbing(stage2, tmp_path):
    """With a tiny random model: the outputs and figures exist (their values mean nothing here)."""
    result = demo_slide_heatmap(stage2, tmp_path / "slide", batch=16, workers=0, progress=False)
    folder = tmp_path / "slide" / result["folder"].split("/")[-1]
    assert (folder / "heatmap.png").exists() and json.loads((folder / "agreement.json").read_text())["tiles"] > 0
    summary = json.loads((folder / "summary.json").read_text())
    x, y, w, h = summary["settings"]["region"]
    assert (x, y, w, h) == heldout_region().box
    assert summary["settings"]["tile_level0"] == high_field() == 64 and summary["settings"]["tile"] == 64
    assert result["auc_dense_vs_loose"] is None or 0 <= result["auc_dense_vs_loose"] <= 1
