"""The demo's whole-slide step: the density question over the held-out region of the demo's H&E
slide, and how well the per-tile P(yes) agrees with the hematoxylin density measured from pixels.

    python -m lavis.apps.slides.demo --model runs/demo/stage2 --out runs/demo/slide
    # or: from lavis.apps.slides.demo import demo_slide_heatmap; demo_slide_heatmap("runs/demo/stage2", "runs/demo/slide")

Tiles are the demo's high-magnification fields (:func:`high_field` level-0 pixels shown at 64 px,
as the demo trains on them), from the region its test questions come from, never its training region. Each
tile's pixel density is the demo's own label measure (:func:`lavis.datasets.demo.tiles.measure`:
mean hematoxylin optical density over tissue pixels); tiles at least 30% tissue are labelled
dense or loose by the demo's bands (those in between are left out of the AUC, as the demo leaves
them unasked). Reported: AUC of P(yes) for dense vs loose, and Spearman's rho of P(yes) against
the hematoxylin density over all tiles at least 30% tissue.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from lavis.apps.slides.job import SlideSettings, analyze_slide
from lavis.apps.slides.outputs import read_table, write_json
from lavis.apps.slides.questions import Generation
from lavis.apps.slides.reader import open_slide
from lavis.apps.slides.tissue import TissueSettings

DENSITY_QUESTION = "Is the tissue in this image dense?"


def high_field() -> int:
    """Level-0 pixels of the demo's high-magnification field of view (shown at ``TILE_PX``)."""
    from lavis.datasets.demo.tiles import SOURCES

    return next(f.size for f in SOURCES["cmu1_he"].fields if f.magnification == "high")


def demo_slide_heatmap(
    model: Any, out: str | os.PathLike, question: str = DENSITY_QUESTION, device: str = "cpu",
    stride: int | None = None, batch: int = 32, workers: int = 1, progress: bool = True,
) -> dict[str, Any]:
    """Ask ``question`` of every tissue tile of the held-out region; write the job's outputs under
    ``out`` and ``agreement.json`` beside the heatmap; return paths and the agreement figures.

    ``model``: a loaded model (``load_pretrained``) or its path. ``stride``: pixels between tiles
    at 64 px per tile (default 64, no overlap; 32 gives a smoother map at four times the tiles).
    """
    from lavis.datasets.demo.tiles import TILE_PX, heldout_region
    from lavis.models import load_pretrained

    loaded = load_pretrained(model, device) if isinstance(model, (str, os.PathLike)) else model
    region = heldout_region()
    reader = open_slide(region.slide)
    settings = SlideSettings(
        tile=TILE_PX, stride=stride, mpp=reader.info.mpp * high_field() / TILE_PX, region=region.box, batch=batch, workers=workers,
        tissue=TissueSettings(min_tissue=0.3), generation=Generation(max_new_tokens=32), progress=progress,
    )
    summaries = analyze_slide(loaded, reader, [question], out, mode="closed", settings=settings)
    folder = Path(out) / next(iter(summaries))
    agreement = density_agreement(read_table(folder), reader)
    write_json(folder / "agreement.json", agreement)
    return {"heatmap": str(folder / "heatmap.png"), "folder": str(folder), **agreement}


def density_agreement(table: Any, reader: Any) -> dict[str, Any]:
    """AUC (dense vs loose) and Spearman's rho (vs hematoxylin OD) of the tiles' P(yes)."""
    from scipy.stats import mannwhitneyu

    from lavis.datasets.demo.tiles import DENSITY_BANDS, FRACTION_BANDS, measure
    from lavis.metrics.ranking import spearman

    scores, density, labels = [], [], []
    for row in table.itertuples(index=False):
        crop = np.asarray(reader.read(0, int(row.x), int(row.y), int(row.size), int(row.size)))
        stats = measure(crop)
        if stats["fraction"] < FRACTION_BANDS[0]:
            continue
        scores.append(float(row.score))
        density.append(stats["hematoxylin"])
        h = stats["hematoxylin"]
        labels.append("dense" if h >= DENSITY_BANDS[1] else "loose" if h <= DENSITY_BANDS[0] else None)
    scores_a = np.array(scores)
    dense = scores_a[[label == "dense" for label in labels]]
    loose = scores_a[[label == "loose" for label in labels]]
    auc = float(mannwhitneyu(dense, loose).statistic / (len(dense) * len(loose))) if len(dense) and len(loose) else None
    rho = spearman(scores, density)  # None when either side is constant
    return {
        "tiles": len(table), "tiles_measured": len(scores), "dense": len(dense), "loose": len(loose),
        "auc_dense_vs_loose": auc, "spearman_vs_hematoxylin": rho,
        "mean_p_yes": {"dense": float(dense.mean()) if len(dense) else None,
                       "loose": float(loose.mean()) if len(loose) else None},
        "density_measure": "mean hematoxylin optical density over tissue pixels (lavis.datasets.demo.tiles.measure)",
        "bands": {"loose_at_most": DENSITY_BANDS[0], "dense_at_least": DENSITY_BANDS[1],
                  "min_tissue_fraction": FRACTION_BANDS[0]},
    }


def main(argv: list[str] | None = None) -> int:
    import argparse
    import json
    import sys

    from lavis.common.errors import LavisError
    from lavis.common.logger import setup_logging

    parser = argparse.ArgumentParser(description="The demo's density heatmap and its agreement with pixel density.")
    parser.add_argument("--model", default="runs/demo/stage2", help="the demo's stage-2 run (or any stage-2 model)")
    parser.add_argument("--out", default="runs/demo/slide")
    parser.add_argument("--question", default=DENSITY_QUESTION)
    parser.add_argument("--stride", type=int, default=None, help="pixels between 64-px tiles (default 64)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    setup_logging()
    try:
        result = demo_slide_heatmap(args.model, args.out, args.question, args.device, args.stride)
    except LavisError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
