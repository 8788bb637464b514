"""Slide jobs end to end with tiny models (real classes, random weights): the outputs and their
schema, tiles against the saved mask, polygons against pixels, the feature cache, the modes and
bad input."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from lavis.apps.slides import TissueSettings, analyze_slide
from lavis.apps.slides.cli import main as slides_main
from lavis.apps.slides.outputs import read_table
from lavis.common.errors import DataError

from .conftest import box_half, fast_settings, tissue_image, write_pyramid_tiff

DENSE = "Is the tissue in this image dense?"


def _only(summaries: dict) -> tuple[str, dict]:
    assert len(summaries) == 1
    return next(iter(summaries.items()))


def test_real_slide_outputs_and_tiles_against_the_saved_mask(stage2, svs_path, tmp_path):
    out = tmp_path / "out"
    folder, summary = _only(analyze_slide(stage2, svs_path, [DENSE], out, settings=fast_settings(mpp=2.0)))
    files = sorted(p.name for p in (out / folder).iterdir())
    assert files == ["heatmap.png", "regions.geojson", "summary.json", "tiles.parquet", "top_tiles.png"]
    assert not list(out.rglob("*.tmp")) and not list(out.rglob(".parts")) and not (out / ".lock").exists()
    for name in ("heatmap.png", "top_tiles.png"):
        with Image.open(out / folder / name) as image:
            assert image.format == "PNG" and min(image.size) > 200
    table = read_table(out / folder)
    assert list(table.columns) == ["tile", "x", "y", "size", "level", "tissue", "score", "answer"]
    assert summary["mode"] == "closed" and summary["tiles"]["analysed"] == len(table) > 10
    assert table["score"].between(0, 1).all() and (table["size"] == 224).all() and (table["level"] == 0).all()
    assert summary["settings"]["mpp"] == pytest.approx(0.499 * 224 / 56)
    assert summary["tiles_per_s"] > 0 and len(summary["top"]) == 4

    # Recount the tissue tiles from the saved mask alone.
    record = json.loads((out / "slide.json").read_text())
    geometry = record["tissue"]["mask"]
    mask = np.asarray(Image.open(out / "tissue_mask.png")) > 127
    assert [mask.shape[1], mask.shape[0]] == geometry["size"]
    dx, dy = geometry["downsample"]
    kept = []
    for y in range(0, 2967 - 224 + 1, 224):
        for x in range(0, 2220 - 224 + 1, 224):
            c0, r0 = int(np.floor(x / dx)), int(np.floor(y / dy))
            c1, r1 = int(np.ceil((x + 224) / dx)), int(np.ceil((y + 224) / dy))
            if mask[r0:r1, c0:c1].mean() >= 0.5:
                kept.append((x, y))
    assert kept == list(zip(table["x"], table["y"], strict=True))
    assert record["tiles"] == {"grid": 9 * 13, "tissue": len(kept)}


def test_geojson_schema_and_polygons_map_to_the_pixels_the_model_saw(stage2, pyramid, tmp_path):
    from safetensors import safe_open

    path, levels = pyramid
    out = tmp_path / "out"
    folder, _ = _only(analyze_slide(stage2, path, [DENSE], out, settings=fast_settings(mpp=0.5)))
    table = read_table(out / folder)
    collection = json.loads((out / folder / "regions.geojson").read_text())
    assert collection["type"] == "FeatureCollection" and len(collection["features"]) == len(table)
    ids = set()
    for feature, row in zip(collection["features"], table.itertuples(), strict=True):
        assert feature["type"] == "Feature"
        ids.add(str(uuid.UUID(feature["id"])))
        ring = feature["geometry"]["coordinates"][0]
        assert feature["geometry"]["type"] == "Polygon" and len(ring) == 5 and ring[0] == ring[-1]
        x, y = ring[0]
        assert ring[2] == [x + 112, y + 112] and (x, y) == (row.x, row.y)
        props = feature["properties"]
        assert props["objectType"] == "tile" and props["tile"] == row.tile
        assert props["measurements"]["score"] == pytest.approx(row.score) == props["score"]
        assert props["classification"]["name"] == ("yes" if row.score >= 0.5 else "no")
        assert len(props["classification"]["color"]) == 3
    assert len(ids) == len(table)

    # The pixels under a polygon, taken from the level-0 array written into the TIFF, are what was
    # read (level 1, 56 px), and the features cached for that tile are the encoder's output on them.
    model, processor = stage2.model, stage2.vis_processor
    (segment,) = (out / "features").glob("*/seg-000000000-*.safetensors")
    with safe_open(str(segment), framework="pt") as handle:
        cached = handle.get_tensor("features")
    for row in table.head(3).itertuples():
        crop = levels[0][row.y : row.y + 112, row.x : row.x + 112]
        assert np.array_equal(box_half(crop), levels[1][row.y // 2 : row.y // 2 + 56, row.x // 2 : row.x // 2 + 56])
        expected = model.encode_image_frozen(processor(Image.fromarray(box_half(crop)))[None])
        torch.testing.assert_close(cached[row.tile : row.tile + 1], expected)


def test_second_question_reuses_features_and_equals_uncached(stage2, svs_path, tmp_path):
    settings = fast_settings(mpp=2.0)
    out = tmp_path / "shared"
    _, first = _only(analyze_slide(stage2, svs_path, [DENSE], out, settings=settings))
    assert first["tiles"]["features_from_cache"] == 0
    second_q = "Is this a high magnification view?"
    folder, second = _only({k: v for k, v in analyze_slide(stage2, svs_path, [DENSE, second_q], out,
                                                             settings=settings).items() if v["question"] == second_q})
    assert second["tiles"]["features_from_cache"] == second["tiles"]["analysed"] == first["tiles"]["analysed"]
    fresh = tmp_path / "fresh"
    fresh_folder, _ = _only(analyze_slide(stage2, svs_path, [second_q], fresh,
                                          settings=fast_settings(mpp=2.0, cache_features=False)))
    assert fresh_folder == folder and not (fresh / "features").exists()
    pd.testing.assert_frame_equal(read_table(out / folder), read_table(fresh / folder))


def test_rerun_of_a_finished_job_changes_nothing(stage2, pyramid, tmp_path):
    out = tmp_path / "out"
    settings = fast_settings(mpp=1.0)
    folder, summary = _only(analyze_slide(stage2, pyramid[0], [DENSE], out, settings=settings))
    stamps = {p: p.stat().st_mtime_ns for p in (out / folder).iterdir()}
    again = analyze_slide(stage2, pyramid[0], [DENSE], out, settings=settings)
    assert again[folder] == json.loads(json.dumps(summary))
    assert {p: p.stat().st_mtime_ns for p in (out / folder).iterdir()} == stamps


def test_retrieval_with_a_stage1_model(stage1, pyramid, tmp_path):
    out = tmp_path / "out"
    folder, summary = _only(analyze_slide(stage1, pyramid[0], ["dense epidermis"], out, settings=fast_settings(mpp=0.5)))
    assert folder.startswith("retrieval-dense-epidermis-") and summary["mode"] == "retrieval"
    table = read_table(out / folder)
    assert table["score"].between(-1, 1).all() and table["score"].std() > 0
    feature = json.loads((out / folder / "regions.geojson").read_text())["features"][0]
    assert "classification" not in feature["properties"] and "score" in feature["properties"]["measurements"]


def test_open_answers(stage2, pyramid, tmp_path):
    out = tmp_path / "out"
    folder, summary = _only(analyze_slide(stage2, pyramid[0], ["What is shown?"], out, settings=fast_settings(mpp=0.5)))
    assert summary["mode"] == "open" and folder.startswith("open-what-is-shown-")
    table = read_table(out / folder)
    assert table["score"].isna().all() and table["answer"].map(lambda a: isinstance(a, str)).all()
    assert (out / folder / "heatmap.png").exists() and (out / folder / "top_tiles.png").exists()


# ---- bad input: one line on stderr, exit 2, no output folder ----------------------------------------
def _cli(capsys, *argv: str) -> tuple[int, str]:
    code = slides_main(["--quiet", "--workers", "0", "--batch", "8", "--max-new-tokens", "2", *argv])
    lines = capsys.readouterr().err.strip().splitlines()  # transformers may draw a loading bar before
    return code, lines[-1] if lines else ""


def _assert_refused(code: int, err: str, pattern: str, out: Path) -> None:
    import re

    assert code == 2 and err.startswith("error: "), err
    assert re.search(pattern, err), err
    assert not out.exists()


def test_bad_inputs_fail_in_one_line_and_write_nothing(capsys, tmp_path, stage1_run, stage2_run, svs_path, pyramid):
    out = tmp_path / "out"
    code, err = _cli(capsys, "--model", str(stage2_run), "--slide", str(svs_path), "--question", "  ", "--out", str(out))
    _assert_refused(code, err, "question number 1 is empty", out)

    broken = tmp_path / "broken.svs"
    broken.write_bytes(b"not a slide at all")
    code, err = _cli(capsys, "--model", str(stage2_run), "--slide", str(broken), "--question", DENSE, "--out", str(out))
    _assert_refused(code, err, "broken.svs.*OpenSlide does not recognise it", out)

    code, err = _cli(capsys, "--model", str(stage1_run), "--slide", str(svs_path), "--question", DENSE,
                     "--mode", "closed", "--out", str(out))
    _assert_refused(code, err, "stage-1 model.*--mode retrieval", out)

    code, err = _cli(capsys, "--model", str(stage2_run), "--slide", str(svs_path), "--question", "dense",
                     "--mode", "retrieval", "--out", str(out))
    _assert_refused(code, err, "retrieval needs a stage-1 model", out)

    blank = tmp_path / "blank.png"
    Image.fromarray(np.full((600, 800, 3), 243, np.uint8)).save(blank)
    code, err = _cli(capsys, "--model", str(stage2_run), "--slide", str(blank), "--question", DENSE, "--out", str(out))
    _assert_refused(code, err, "blank.png' records neither microns per pixel.*--slide-mpp", out)
    code, err = _cli(capsys, "--model", str(stage2_run), "--slide", str(blank), "--slide-mpp", "0.5",
                     "--question", DENSE, "--out", str(out))
    _assert_refused(code, err, "no tissue found in .*blank.png", out)


def test_an_output_folder_holds_one_slide(capsys, tmp_path, stage2_run, pyramid, svs_path):
    out = tmp_path / "out"
    code, _ = _cli(capsys, "--model", str(stage2_run), "--slide", str(pyramid[0]), "--question", DENSE,
                   "--out", str(out), "--mpp", "1.0", "--top-k", "0", "--table", "csv")
    assert code == 0 and len(list(out.glob("closed-*/tiles.csv"))) == 1
    code, err = _cli(capsys, "--model", str(stage2_run), "--slide", str(svs_path), "--question", DENSE,
                     "--out", str(out), "--mpp", "2.0")
    assert code == 2 and "holds the analysis of another slide or tile grid" in err and "\n" not in err


def test_damaged_tiles_read_by_a_worker_fail_in_one_line(stage2, tmp_path):
    """Level 0 damaged, level 1 intact: tissue is found on the thumbnail, then a DataLoader worker
    meets the damage and the job stops with the slide and the box, one line, outputs unwritten."""
    path = tmp_path / "damaged.tif"
    write_pyramid_tiff(path, tissue_image(), 0.25)
    data = bytearray(path.read_bytes())
    data[2_000:400_000] = bytes(range(256)) * (398_000 // 256) + bytes(398_000 % 256)  # level 0 comes first
    path.write_bytes(bytes(data))
    out = tmp_path / "out"
    settings = fast_settings(mpp=0.25, workers=1, tissue=TissueSettings(max_side=400))  # thumbnail from level 1
    with pytest.raises(DataError, match=r"damaged.tif: cannot read the 56x56 box at level 0") as err:
        analyze_slide(stage2, path, [DENSE], out, settings=settings)
    assert "\n" not in str(err.value) and "Traceback" not in str(err.value)
    assert not list(out.glob("*/summary.json")) and not list(out.glob("*/tiles.parquet"))
