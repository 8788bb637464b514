import struct
import zlib

import pytest
from PIL import Image

from lavis.common.errors import DataError
from lavis.common.path_rules import check_under_root
from lavis.datasets.bad_data import SkippedSample
from lavis.datasets.image_io import load_image, load_image_bytes


def _png_claiming_size(png: bytes, width: int, height: int) -> bytes:
    """A real PNG whose IHDR claims another size (valid CRC): what a decompression bomb looks like."""
    start = png.index(b"IHDR")
    ihdr = bytearray(png[start : start + 4 + 13])
    ihdr[4:12] = struct.pack(">II", width, height)
    crc = struct.pack(">I", zlib.crc32(bytes(ihdr)) & 0xFFFFFFFF)
    return png[:start] + bytes(ihdr) + crc + png[start + 4 + 13 + 4 :]


def test_reads_jpeg_and_png_as_rgb(tmp_path, write):
    for name in ("a.jpg", "b.png"):
        image = load_image(write.image_file(tmp_path / name, size=(30, 20)))
        assert isinstance(image, Image.Image) and image.mode == "RGB" and image.size == (30, 20)


def test_missing_file_is_skipped_with_reason(tmp_path):
    result = load_image(tmp_path / "nope.jpg")
    assert result == SkippedSample(str(tmp_path / "nope.jpg"), "file not found")


def test_truncated_jpeg_is_skipped(tmp_path, write):
    path = tmp_path / "cut.jpg"
    data = write.image_bytes("JPEG", size=(64, 64))
    path.write_bytes(data[: len(data) // 2])
    result = load_image(path)
    assert isinstance(result, SkippedSample)
    assert "truncated" in result.reason and result.path == str(path)


def test_non_image_file_is_skipped(tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("this is not a picture")
    result = load_image(path)
    assert isinstance(result, SkippedSample) and "not an image" in result.reason


def test_pixel_limit_refuses_large_images(tmp_path, write):
    path = write.image_file(tmp_path / "big.png", size=(64, 64))
    result = load_image(path, max_pixels=1000)
    assert isinstance(result, SkippedSample)
    assert "decompression bomb" in result.reason and "64x64 = 4096 pixels" in result.reason


def test_pil_decompression_bomb_error_becomes_a_skip(write):
    bomb = _png_claiming_size(write.image_bytes("PNG", size=(8, 8)), 20000, 20000)
    result = load_image_bytes(bomb, "bomb.png")
    assert isinstance(result, SkippedSample) and "decompression bomb" in result.reason


def test_pil_bomb_warning_becomes_a_skip(write):
    # Above PIL's warning threshold, below its error threshold: still refused, not just warned.
    bomb = _png_claiming_size(write.image_bytes("PNG", size=(8, 8)), 10000, 10000)
    result = load_image_bytes(bomb, "bomb.png", max_pixels=10**9)
    assert isinstance(result, SkippedSample) and "decompression bomb" in result.reason


def test_strict_mode_raises_with_path_and_reason(tmp_path):
    with pytest.raises(DataError, match=r"nope\.jpg: file not found \(strict mode"):
        load_image(tmp_path / "nope.jpg", strict=True)


def test_empty_bytes_are_skipped():
    assert load_image_bytes(b"", "row#3") == SkippedSample("row#3", "no image bytes")


def test_paths_escaping_the_root_are_refused(tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    def where(index):
        return f"ann.csv: row {index + 1}"

    check_under_root(["a/b.jpg", "x..y.jpg", str(root / "inside.jpg")], root, "image_path", where)
    for bad, row in ((["ok.jpg", "../secret.jpg"], 2), (["/etc/passwd"], 1), (["a/../../b.jpg"], 1)):
        with pytest.raises(DataError, match=rf"ann\.csv: row {row}, field 'image_path'.*escapes the data root"):
            check_under_root(bad, root, "image_path", where)
